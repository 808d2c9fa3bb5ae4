package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Event is an event of the runtime protocol, from the bootstrap's event
// pipe.
type Event struct {
	Type     string  `json:"type"`
	Runtime  string  `json:"runtime,omitempty"`
	Version  string  `json:"version,omitempty"`
	Protocol string  `json:"protocol,omitempty"`
	PID      int     `json:"pid,omitempty"`
	Millis   float64 `json:"ms,omitempty"`
	Error    string  `json:"error,omitempty"`
	Detail   string  `json:"detail,omitempty"`
}

// Load is the load message of the runtime protocol.
type Load struct {
	Type        string            `json:"type"`
	FunctionID  string            `json:"function_id"`
	CodeDir     string            `json:"code_dir"`
	Entry       string            `json:"entry"`
	Args        []string          `json:"args,omitempty"`
	Env         map[string]string `json:"env"`
	InitPath    string            `json:"init_path,omitempty"`
	Concurrency int               `json:"concurrency"`
}

// Bootstrap is a runtime's bootstrap started and driven the way an agent
// does it, without one: the conformance suite's view of a runtime, and a
// harness for a runtime author's own tests.
type Bootstrap struct {
	// Addr is 127.0.0.1:PORT, where the bootstrap serves.
	Addr string
	// Ready is its ready event.
	Ready Event

	cmd     *exec.Cmd
	control *os.File
	events  chan Event
	stdout  *lineBuffer
	stderr  *lineBuffer
	done    chan struct{}
	state   *os.ProcessState
	readers sync.WaitGroup
}

// Start starts rt's bootstrap in dir as an agent does — the two pipes on
// descriptors 3 and 4, a socket listening on 127.0.0.1:PORT on descriptor
// 5, env added — and waits for its ready event.
func Start(ctx context.Context, rt Runtime, dir string, env ...string) (*Bootstrap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	lnFile, err := ln.(*net.TCPListener).File()
	_ = ln.Close()
	if err != nil {
		return nil, err
	}
	defer lnFile.Close()
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		_, _ = ctlR.Close(), ctlW.Close()
		return nil, err
	}
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	cmd := exec.Command(rt.Path, rt.Args...)
	cmd.Dir = dir
	cmd.Env = append(append(append(os.Environ(), rt.Env...), env...),
		"PORT="+strconv.Itoa(port), "FAAS_CONTROL_FD=3", "FAAS_EVENT_FD=4", "FAAS_LISTEN_FD=5", "FAAS_RUNTIME="+rt.Name, "FAAS_RUNTIME_PROTOCOL=1")
	cmd.ExtraFiles = []*os.File{ctlR, evW, lnFile}
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	for _, f := range []*os.File{ctlR, evW, outW, errW} {
		_ = f.Close()
	}
	if err != nil {
		for _, f := range []*os.File{ctlW, evR, outR, errR} {
			_ = f.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", rt.Path, err)
	}
	b := &Bootstrap{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, control: ctlW,
		events: make(chan Event, 16), stdout: newLineBuffer(), stderr: newLineBuffer(), done: make(chan struct{}),
	}
	b.readers.Add(3)
	go func() { defer b.readers.Done(); b.stdout.read(outR) }()
	go func() { defer b.readers.Done(); b.stderr.read(errR) }()
	go func() { defer b.readers.Done(); b.readEvents(evR) }()
	go func() {
		_ = cmd.Wait()
		b.state = cmd.ProcessState
		close(b.done)
	}()
	ev, err := b.Next(ctx)
	if err != nil {
		b.Kill()
		return nil, fmt.Errorf("waiting for ready: %w (stderr: %s)", err, b.Stderr())
	}
	if ev.Type != "ready" {
		b.Kill()
		return nil, fmt.Errorf("first event %q, want ready", ev.Type)
	}
	b.Ready = ev
	return b, nil
}

func (b *Bootstrap) readEvents(r *os.File) {
	defer r.Close()
	defer close(b.events)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			ev = Event{Type: "malformed", Error: err.Error() + ": " + sc.Text()}
		}
		b.events <- ev
	}
}

// ErrExited is returned while waiting on a bootstrap that has exited.
var ErrExited = errors.New("conformance: the bootstrap exited")

// Next returns the next event.
func (b *Bootstrap) Next(ctx context.Context) (Event, error) {
	select {
	case ev, ok := <-b.events:
		if !ok {
			return Event{}, fmt.Errorf("%w (%v)", ErrExited, b.exitState())
		}
		return ev, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// Send writes one control message.
func (b *Bootstrap) Send(msg any) error {
	line, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = b.control.Write(append(line, '\n'))
	return err
}

// Load sends a load message and returns the answer (loaded or
// load_failed).
func (b *Bootstrap) Load(ctx context.Context, msg Load) (Event, error) {
	msg.Type = "load"
	if err := b.Send(msg); err != nil {
		return Event{}, err
	}
	return b.Next(ctx)
}

// CloseControl closes the control pipe, as an agent that died would.
func (b *Bootstrap) CloseControl() { _ = b.control.Close() }

// Signal sends sig to the bootstrap.
func (b *Bootstrap) Signal(sig syscall.Signal) error { return b.cmd.Process.Signal(sig) }

// Wait waits for the bootstrap to exit and returns how it ended.
func (b *Bootstrap) Wait(ctx context.Context) (*os.ProcessState, error) {
	select {
	case <-b.done:
		return b.state, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *Bootstrap) exitState() string {
	select {
	case <-b.done:
		return b.state.String()
	default:
		return "running"
	}
}

// Kill kills the bootstrap's process group and waits for it and its
// output.
func (b *Bootstrap) Kill() {
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
	b.CloseControl()
	b.readers.Wait()
}

// PID is the bootstrap's process ID.
func (b *Bootstrap) PID() int { return b.cmd.Process.Pid }

// Stdout returns what the bootstrap wrote to stdout so far.
func (b *Bootstrap) Stdout() string { return b.stdout.String() }

// Stderr returns what the bootstrap wrote to stderr so far.
func (b *Bootstrap) Stderr() string { return b.stderr.String() }

// WaitOutput waits until stdout (or stderr) has a line containing s.
func (b *Bootstrap) WaitOutput(ctx context.Context, stderr bool, s string) (string, error) {
	lb := b.stdout
	if stderr {
		lb = b.stderr
	}
	return lb.wait(ctx, s)
}

// lineBuffer keeps a stream's lines and wakes waiters on each.
type lineBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLineBuffer() *lineBuffer { return &lineBuffer{changed: make(chan struct{})} }

func (l *lineBuffer) read(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		l.mu.Lock()
		l.buf.Write(sc.Bytes())
		l.buf.WriteByte('\n')
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lineBuffer) wait(ctx context.Context, s string) (string, error) {
	for {
		l.mu.Lock()
		text, ch := l.buf.String(), l.changed
		l.mu.Unlock()
		for line := range strings.SplitSeq(text, "\n") {
			if strings.Contains(line, s) {
				return line, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", fmt.Errorf("no line with %q in %q: %w", s, text, ctx.Err())
		}
	}
}

// waitClosed waits until a dial to addr is refused (the bootstrap stopped
// listening), polling; the protocol offers no notification of it.
func waitClosed(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		_ = c.Close()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still accepts connections: %w", addr, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
