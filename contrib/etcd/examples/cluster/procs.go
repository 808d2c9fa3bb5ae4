package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// roleEnv names the role a re-executed copy of this program plays: the
// orchestrator starts the pod host and the nodes as processes of its own
// binary (the example's, or the test's), so that `go run` needs nothing
// else built.
const roleEnv = "FAAS_CLUSTER_ROLE"

// runRole runs the role named in the environment, if any, and reports
// whether there was one.
func runRole() (bool, error) {
	switch role := os.Getenv(roleEnv); role {
	case "":
		return false, nil
	case "node":
		return true, runNode(os.Args[1:])
	case "podhost":
		return true, runPodHost(os.Args[1:])
	default:
		return true, fmt.Errorf("unknown %s %q", roleEnv, role)
	}
}

// proc is a child process of the orchestrator.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string // from its READY line
	done chan struct{}
	mu   sync.Mutex
	tail bytes.Buffer // the end of its stderr, for failures
}

// startProc runs this binary in role with args and waits for its READY
// line.
func startProc(ctx context.Context, name, role string, verbose bool, args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the orchestrator
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go p.keepTail(stderr, verbose)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				select {
				case ready <- a:
				default:
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	select {
	case p.addr = <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready: %s", name, p.stderrTail())
	case <-timer.C:
	case <-ctx.Done():
	}
	p.kill()
	return nil, fmt.Errorf("%s was not ready: %s", name, p.stderrTail())
}

func (p *proc) keepTail(r io.Reader, verbose bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if verbose {
			fmt.Fprintf(os.Stderr, "[%s] %s\n", p.name, line)
		}
		p.mu.Lock()
		p.tail.WriteString(line + "\n")
		if p.tail.Len() > 16<<10 {
			b := p.tail.Bytes()[p.tail.Len()-8<<10:]
			p.tail = *bytes.NewBuffer(append([]byte(nil), b...))
		}
		p.mu.Unlock()
	}
}

func (p *proc) stderrTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tail.String()
}

// kill sends SIGKILL and waits for the process.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to shut down gracefully, then kills it.
func (p *proc) stop(grace time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		p.kill()
		return errors.New(p.name + " did not stop within " + grace.String())
	}
}
