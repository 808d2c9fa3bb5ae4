package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// processSpec says how to start a function process.
type processSpec struct {
	functionID string
	path       string   // resolved executable
	args       []string // without argv[0]
	dir        string   // working directory: the unpacked package
	env        []string // without PORT
	runAs      *RunAs   // nil: the agent's own user
	logger     *slog.Logger
}

// process is a running function process, the leader of its own process
// group. A goroutine waits for it (so it never stays a zombie) and two pump
// its stdout and stderr into the logger line by line.
type process struct {
	pid    int
	addr   string // 127.0.0.1:port
	cmd    *exec.Cmd
	log    *slog.Logger
	done   chan struct{} // closed once the process has been reaped
	exited atomic.Bool
	// stopping is set before the agent signals the process, so that its
	// exit is logged as expected rather than as a crash.
	stopping atomic.Bool
	state    *os.ProcessState // set before done is closed
	pipes    [2]*os.File      // read ends of stdout and stderr
	pumps    sync.WaitGroup
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the function binds it; the load then fails with
// load_failed, which the caller may retry on another pod.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

// startProcess starts the function process with PORT set to a free port.
func startProcess(spec processSpec) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("finding a free port: %w", err)
	}
	var readEnds, writeEnds [2]*os.File
	for i := range readEnds {
		if readEnds[i], writeEnds[i], err = os.Pipe(); err != nil {
			closeAll(readEnds[:], writeEnds[:])
			return nil, fmt.Errorf("creating output pipe: %w", err)
		}
	}
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Dir = spec.dir
	cmd.Env = append(append(make([]string, 0, len(spec.env)+1), spec.env...), "PORT="+strconv.Itoa(port))
	// *os.File outputs go straight to the child: no copying goroutine in
	// os/exec, so Wait does not wait for output and a child that keeps
	// the pipe open cannot block the reaper.
	cmd.Stdout, cmd.Stderr = writeEnds[0], writeEnds[1]
	cmd.SysProcAttr = sysProcAttr()
	if spec.runAs != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: spec.runAs.UID, Gid: spec.runAs.GID, Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		closeAll(readEnds[:], writeEnds[:])
		return nil, fmt.Errorf("starting %s: %w", spec.path, err)
	}
	closeAll(writeEnds[:]) // the child holds its own copies
	p := &process{
		pid:   cmd.Process.Pid,
		addr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		cmd:   cmd,
		log:   spec.logger.With("function_id", spec.functionID, "pid", cmd.Process.Pid),
		done:  make(chan struct{}),
		pipes: readEnds,
	}
	for i, stream := range []string{"stdout", "stderr"} {
		p.pumps.Add(1)
		go p.pump(readEnds[i], stream)
	}
	go p.wait()
	return p, nil
}

func closeAll(groups ...[]*os.File) {
	for _, g := range groups {
		for _, f := range g {
			if f != nil {
				_ = f.Close()
			}
		}
	}
}

// maxLogLine bounds one log record of function output; longer lines are
// split.
const maxLogLine = 16 << 10

func (p *process) pump(r *os.File, stream string) {
	defer p.pumps.Done()
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			p.log.Info("function output", "stream", stream, "line", string(line))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return // EOF once every writer is gone, or the agent closed r
		}
	}
}

func (p *process) wait() {
	err := p.cmd.Wait()
	p.state = p.cmd.ProcessState
	p.exited.Store(true)
	close(p.done)
	if p.stopping.Load() {
		p.log.Debug("function process stopped", "status", p.state.String())
		return
	}
	p.log.Warn("function process exited", "status", p.state.String(), "err", err)
}

// waitReady dials the process's port until it accepts a connection, the
// process exits, or ctx is done. The first attempts come quickly: 200 µs
// apart, growing by half each time to at most 1 ms during the first 100 ms
// (a prebuilt binary listens within milliseconds, and every millisecond of
// detection lag is cold-start latency; a refused dial on loopback costs
// tens of microseconds), then up to 20 ms apart for slow starters.
func (p *process) waitReady(ctx context.Context) error {
	var d net.Dialer
	start := time.Now()
	backoff := 200 * time.Microsecond
	timer := time.NewTimer(backoff)
	defer timer.Stop()
	for {
		dctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		conn, err := d.DialContext(dctx, "tcp", p.addr)
		cancel()
		if err == nil {
			_ = conn.Close()
			return nil
		}
		timer.Reset(backoff)
		select {
		case <-p.done:
			return fmt.Errorf("process exited before listening on %s (%s)", p.addr, p.state)
		case <-ctx.Done():
			return fmt.Errorf("process did not listen on %s: %w", p.addr, context.Cause(ctx))
		case <-timer.C:
		}
		limit := 20 * time.Millisecond
		if time.Since(start) < 100*time.Millisecond {
			limit = time.Millisecond
		}
		backoff = min(backoff*3/2, limit)
	}
}

// stop ends the process group: SIGTERM, up to grace for the leader to exit,
// then SIGKILL for the whole group (stragglers included), reaping the
// leader. It then waits up to a second for the output pumps to drain what
// the process wrote last, and closes the pipes. Safe to call more than once
// and after the process exited on its own.
func (p *process) stop(grace time.Duration) {
	p.stopping.Store(true)
	if !p.exited.Load() {
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	// The group may outlive its leader (a child the function forked).
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.done
	drained := make(chan struct{})
	go func() { p.pumps.Wait(); close(drained) }()
	t := time.NewTimer(time.Second)
	select {
	case <-drained:
	case <-t.C:
		// A descendant that left the group still holds the pipe.
	}
	t.Stop()
	closeAll(p.pipes[:])
	<-drained
}
