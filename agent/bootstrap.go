package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// Bootstrap is a language runtime's bootstrap: the process that a warm pod
// of the runtime runs before any function is known and that then loads one
// function into itself (a hot load), as RUNTIMES.md specifies. Package
// runtimes ships those of Python and Node.js.
type Bootstrap struct {
	// Path is the program to run: an absolute path, or a name found on
	// PATH. Required.
	Path string
	// Args are its arguments.
	Args []string
	// Env is added to its environment, after Config.BaseEnv.
	Env []string
	// Exec starts a new bootstrap for each load, and sends it the load at
	// once, instead of hot-loading into the one started with the agent:
	// the same runtime and function without hot load, for comparison or
	// for a runtime that must not outlive a failed load.
	Exec bool
}

// The environment of a bootstrap: the descriptors of its two pipes.
const (
	// controlFD is the read end of the control pipe (agent → bootstrap).
	controlFD = 3
	// eventFD is the write end of the event pipe (bootstrap → agent).
	eventFD = 4
	// listenFD is the socket bound to 127.0.0.1:PORT and listening, made
	// by the agent, so that no other process can take the port between
	// its choice and the bind.
	listenFD = 5
	// RuntimeProtocolVersion is the version of the runtime protocol the
	// agent speaks, passed to bootstraps as FAAS_RUNTIME_PROTOCOL.
	RuntimeProtocolVersion = "1"
)

// loadMessage is the load message of the runtime protocol.
type loadMessage struct {
	Type        string            `json:"type"` // "load"
	FunctionID  string            `json:"function_id"`
	CodeDir     string            `json:"code_dir"`
	Entry       string            `json:"entry"`
	Args        []string          `json:"args,omitempty"`
	Env         map[string]string `json:"env"`
	InitPath    string            `json:"init_path,omitempty"`
	Concurrency int               `json:"concurrency"`
	TimeoutMs   int64             `json:"timeout_ms,omitempty"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
}

// bootEvent is an event of the runtime protocol.
type bootEvent struct {
	Type     string  `json:"type"` // "ready", "loaded" or "load_failed"
	Runtime  string  `json:"runtime,omitempty"`
	Version  string  `json:"version,omitempty"`
	Protocol string  `json:"protocol,omitempty"`
	PID      int     `json:"pid,omitempty"`
	Millis   float64 `json:"ms,omitempty"`
	Error    string  `json:"error,omitempty"`
	Detail   string  `json:"detail,omitempty"`
}

// maxEventLine bounds one event from a bootstrap.
const maxEventLine = 1 << 20

// bootstrapProc is a running bootstrap with the two pipes of the runtime
// protocol.
type bootstrapProc struct {
	proc    *process
	control *os.File // write end: load messages
	events  *os.File // read end
	log     *slog.Logger
	ready   chan struct{} // closed by the ready event
	info    bootEvent     // the ready event, once ready is closed
	result  chan bootEvent
	reader  sync.WaitGroup
	stopped sync.Once
}

// startBootstrap starts the runtime's bootstrap in the work directory,
// in lim's cgroup (nil: none; for a hot load, an empty cgroup whose limits
// the load sets). On failure it releases lim.
func (a *Agent) startBootstrap(lim *limits) (*bootstrapProc, error) {
	bs := a.cfg.Bootstrap
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating the control pipe: %w", err)
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		closeAll([]*os.File{ctlR, ctlW})
		return nil, fmt.Errorf("creating the event pipe: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		closeAll([]*os.File{ctlR, ctlW, evR, evW})
		return nil, fmt.Errorf("listening for the bootstrap: %w", err)
	}
	lnFile, err := ln.(*net.TCPListener).File() // a duplicate, for the child
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	if err != nil {
		closeAll([]*os.File{ctlR, ctlW, evR, evW})
		return nil, fmt.Errorf("listening for the bootstrap: %w", err)
	}
	env := append(append([]string(nil), a.cfg.BaseEnv...), bs.Env...)
	env = append(env, "FAAS_RUNTIME="+a.cfg.Runtime, "FAAS_RUNTIME_PROTOCOL="+RuntimeProtocolVersion,
		fmt.Sprintf("FAAS_CONTROL_FD=%d", controlFD), fmt.Sprintf("FAAS_EVENT_FD=%d", eventFD), fmt.Sprintf("FAAS_LISTEN_FD=%d", listenFD))
	if a.cfg.Instance != "" {
		env = append(env, "FAAS_INSTANCE="+a.cfg.Instance)
	}
	// A bootstrap that waits for its load may warm itself up first; one
	// started for a load should not make the load wait for that.
	if bs.Exec {
		env = append(env, "FAAS_BOOTSTRAP_MODE=exec")
	} else {
		env = append(env, "FAAS_BOOTSTRAP_MODE=hot")
	}
	proc, err := startProcess(processSpec{
		path: bs.Path, args: bs.Args, dir: a.cfg.WorkDir, env: env, runAs: a.cfg.RunAs,
		extra: []*os.File{ctlR, evW, lnFile}, port: port, limits: lim, out: a.out, logger: a.log.With("bootstrap", bs.Path), memKills: &a.memKills,
	})
	closeAll([]*os.File{ctlR, evW, lnFile}) // the child holds its own copies
	if err != nil {
		closeAll([]*os.File{ctlW, evR})
		lim.release()
		return nil, fmt.Errorf("starting the %s bootstrap: %w", a.cfg.Runtime, err)
	}
	b := &bootstrapProc{proc: proc, control: ctlW, events: evR, log: a.log, ready: make(chan struct{}), result: make(chan bootEvent, 1)}
	b.reader.Add(1)
	go b.read()
	return b, nil
}

// read reads events until the pipe ends (the bootstrap is gone) or is
// closed.
func (b *bootstrapProc) read() {
	defer b.reader.Done()
	sc := bufio.NewScanner(b.events)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	readyOnce := false
	for sc.Scan() {
		var ev bootEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			b.log.Warn("bootstrap: malformed event", "err", err, "pid", b.proc.pid)
			continue
		}
		switch ev.Type {
		case "ready":
			if !readyOnce {
				readyOnce = true
				b.info = ev
				close(b.ready)
			}
		case "loaded", "load_failed":
			select {
			case b.result <- ev:
			default: // only the answer to the one load counts
			}
		default:
			// Unknown events are ignored, so that newer runtimes can tell
			// more.
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		b.log.Warn("bootstrap: reading events", "err", err, "pid", b.proc.pid)
	}
}

// waitReady waits for the ready event.
func (b *bootstrapProc) waitReady(ctx context.Context) error {
	select {
	case <-b.ready:
		return nil
	case <-b.proc.done:
		return fmt.Errorf("the bootstrap exited before it was ready (%s)", b.proc.exitText)
	case <-ctx.Done():
		return fmt.Errorf("the bootstrap was not ready: %w", context.Cause(ctx))
	}
}

// errLoadRefused is a load that the bootstrap answered with load_failed.
type errLoadRefused struct{ ev bootEvent }

func (e *errLoadRefused) Error() string { return "the function did not load: " + e.ev.Error }

// load sends the load message and waits for the bootstrap's answer.
func (b *bootstrapProc) load(ctx context.Context, msg loadMessage) (bootEvent, error) {
	line, err := json.Marshal(msg)
	if err != nil {
		return bootEvent{}, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = b.control.SetWriteDeadline(d)
	}
	if _, err := b.control.Write(append(line, '\n')); err != nil {
		select {
		case <-b.proc.done:
			return bootEvent{}, fmt.Errorf("the bootstrap exited (%s)", b.proc.exitText)
		default:
		}
		return bootEvent{}, fmt.Errorf("sending the load: %w", err)
	}
	select {
	case ev := <-b.result:
		if ev.Type != "loaded" {
			return ev, &errLoadRefused{ev}
		}
		return ev, nil
	case <-b.proc.done:
		// An answer may have come just before the exit.
		select {
		case ev := <-b.result:
			if ev.Type == "load_failed" {
				return ev, &errLoadRefused{ev}
			}
		default:
		}
		return bootEvent{}, fmt.Errorf("the bootstrap exited during the load (%s)", b.proc.exitText)
	case <-ctx.Done():
		return bootEvent{}, fmt.Errorf("the bootstrap did not answer the load: %w", context.Cause(ctx))
	}
}

// stop stops the bootstrap's process group and closes the pipes.
func (b *bootstrapProc) stop(grace time.Duration) {
	b.stopped.Do(func() {
		b.proc.stop(grace)
		_ = b.control.Close()
		_ = b.events.Close()
		b.reader.Wait()
	})
}

// protocolOf returns the protocol a ready event declared, if valid.
func (ev bootEvent) protocolOf() string {
	switch ev.Protocol {
	case lifecycle.ProtocolHTTP1, lifecycle.ProtocolH2C:
		return ev.Protocol
	}
	return ""
}
