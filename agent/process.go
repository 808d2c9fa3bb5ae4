package agent

import (
	"context"
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

	"github.com/faasplane/faas/lifecycle"
)

// processSpec says how to start a function process (or a runtime's
// bootstrap).
type processSpec struct {
	path  string     // resolved executable
	args  []string   // without argv[0]
	dir   string     // working directory: the unpacked package
	env   []string   // without PORT
	runAs *RunAs     // nil: the agent's own user
	extra []*os.File // become the child's descriptors 3, 4, ...
	// port, when not zero, is PORT (the caller made the listener);
	// otherwise a free one is picked.
	port int
	// limits are enforced on the process: a cgroup v2 places it at its
	// creation; the caller applies the rest.
	limits *limits
	out    *outputLog
	logger *slog.Logger
	// memKills counts the processes ended for exceeding their memory
	// limit.
	memKills *atomic.Int64
}

// process is a running function process, the leader of its own process
// group. A goroutine waits for it (so it never stays a zombie) and two pump
// its stdout and stderr into the log sink line by line.
type process struct {
	pid    int
	addr   string // 127.0.0.1:port
	cmd    *exec.Cmd
	log    *slog.Logger
	out    *outputLog
	done   chan struct{} // closed once the process has been reaped
	exited atomic.Bool
	// stopping is set before the agent signals the process, so that its
	// exit is logged as expected rather than as a crash.
	stopping atomic.Bool
	// limits are the process's limits (set for a hot-loaded bootstrap at
	// the load); stop releases them.
	limits atomic.Pointer[limits]
	// Set before done is closed:
	state     *os.ProcessState
	exitText  string // how it ended, "memory limit exceeded (...)" first when it did
	memKilled atomic.Bool
	memKills  *atomic.Int64
	pipes     [2]*os.File // read ends of stdout and stderr
	pumps     sync.WaitGroup
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

// startProcess starts the process with PORT set to spec.port, or to a free
// port.
func startProcess(spec processSpec) (*process, error) {
	port := spec.port
	var err error
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
	}
	var readEnds, writeEnds [2]*os.File
	for i := range readEnds {
		if readEnds[i], writeEnds[i], err = os.Pipe(); err != nil {
			closeAll(readEnds[:], writeEnds[:])
			return nil, fmt.Errorf("creating output pipe: %w", err)
		}
	}
	newCmd := func() *exec.Cmd {
		cmd := exec.Command(spec.path, spec.args...)
		cmd.Dir = spec.dir
		cmd.Env = append(append(make([]string, 0, len(spec.env)+1), spec.env...), "PORT="+strconv.Itoa(port))
		// *os.File outputs go straight to the child: no copying goroutine
		// in os/exec, so Wait does not wait for output and a child that
		// keeps the pipe open cannot block the reaper.
		cmd.Stdout, cmd.Stderr = writeEnds[0], writeEnds[1]
		cmd.ExtraFiles = spec.extra
		cmd.SysProcAttr = sysProcAttr()
		if spec.runAs != nil {
			cmd.SysProcAttr.Credential = &syscall.Credential{Uid: spec.runAs.UID, Gid: spec.runAs.GID, Groups: []uint32{}}
		}
		return cmd
	}
	cmd := newCmd()
	spec.limits.procAttr(cmd.SysProcAttr)
	err = cmd.Start()
	if err != nil && usesCgroupFD(cmd.SysProcAttr) {
		// A kernel without clone3's CLONE_INTO_CGROUP: start it, then
		// move it.
		cmd = newCmd()
		err = cmd.Start()
	}
	if err != nil {
		closeAll(readEnds[:], writeEnds[:])
		return nil, fmt.Errorf("starting %s: %w", spec.path, err)
	}
	closeAll(writeEnds[:]) // the child holds its own copies
	p := &process{
		pid:      cmd.Process.Pid,
		addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		cmd:      cmd,
		log:      spec.logger.With("pid", cmd.Process.Pid),
		out:      spec.out,
		done:     make(chan struct{}),
		pipes:    readEnds,
		memKills: spec.memKills,
	}
	if spec.limits != nil {
		p.limits.Store(spec.limits)
	}
	for i, stream := range []string{"stdout", "stderr"} {
		p.pumps.Add(1)
		go func() {
			defer p.pumps.Done()
			p.out.pump(readEnds[i], stream)
		}()
	}
	go p.wait()
	if spec.limits != nil && spec.limits.cg != nil && !usesCgroupFD(cmd.SysProcAttr) {
		if err := spec.limits.enter(p.pid); err != nil {
			p.stop(0)
			return nil, err
		}
	}
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

// lastWordsWait bounds how long the reaper of a process that failed under
// a process limit waits for its last output, which says whether it ran out
// of memory.
const lastWordsWait = 250 * time.Millisecond

func (p *process) wait() {
	err := p.cmd.Wait()
	st := p.cmd.ProcessState
	lim := p.limits.Load()
	stopping := p.stopping.Load()
	if lim != nil && !stopping && !st.Success() && lim.mem == lifecycle.MemoryLimitRlimit {
		drained := make(chan struct{})
		go func() { p.pumps.Wait(); close(drained) }()
		t := time.NewTimer(lastWordsWait)
		select {
		case <-drained:
		case <-t.C:
		}
		t.Stop()
	}
	over := !stopping && lim.overLimit(st, p.out.oomHint.Load())
	p.state = st
	p.exitText = st.String()
	if over {
		p.exitText = "memory limit exceeded (" + lim.describe() + "): " + st.String()
		p.memKilled.Store(true)
		if p.memKills != nil {
			p.memKills.Add(1)
		}
	}
	p.exited.Store(true)
	close(p.done)
	log := p.log
	if id := p.out.functionID(); id != "" {
		log = log.With("function_id", id)
	}
	switch {
	case stopping:
		log.Debug("function process stopped", "status", p.exitText)
	case over:
		log.Warn("function process exceeded its memory limit", "status", p.exitText, "limit", lim.describe())
	default:
		log.Warn("function process exited", "status", p.exitText, "err", err)
	}
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
			return fmt.Errorf("process exited before listening on %s (%s)", p.addr, p.exitText)
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
// the process wrote last, closes the pipes and removes the process's
// cgroup. Safe to call more than once and after the process exited on its
// own.
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
	if lim := p.limits.Swap(nil); lim != nil {
		lim.release()
	}
}
