package natstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Process is a nats-server child process with JetStream. Kill and Start
// stop and start it again on the same port and store; Close ends it.
type Process struct {
	opts Options
	tmp  bool
	bin  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has been waited for
}

// StartProcess starts nats-server (finding or building it with
// [EnsureServer]) and returns once it serves JetStream requests, within
// ctx.
func StartProcess(ctx context.Context, opts Options) (*Process, error) {
	bin, err := EnsureServer(ctx, nil)
	if err != nil {
		return nil, err
	}
	opts, tmp, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	p := &Process{opts: opts, tmp: tmp, bin: bin}
	if err := p.Start(ctx); err != nil {
		p.removeTemp()
		return nil, err
	}
	return p, nil
}

// URL returns the client URL, nats://127.0.0.1:port.
func (p *Process) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(p.opts.Port) }

// Dir returns the server's directory.
func (p *Process) Dir() string { return p.opts.Dir }

// LogPath returns the file that receives the server's output.
func (p *Process) LogPath() string { return filepath.Join(p.opts.Dir, "nats-server.log") }

// PID returns the running server's process ID, or 0.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Start starts the server if it is not running and returns once it serves
// JetStream requests, within ctx.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return nil
	}
	log, err := os.OpenFile(p.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("natstest: %w", err)
	}
	args := []string{"-n", "natstest", "-a", "127.0.0.1", "-p", strconv.Itoa(p.opts.Port), "-js", "-sd", p.opts.Dir}
	if p.opts.MaxPayload > 0 {
		// The flag has no command-line form; a config file sets it.
		conf := filepath.Join(p.opts.Dir, "nats-server.conf")
		if err := os.WriteFile(conf, fmt.Appendf(nil, "max_payload: %d\n", p.opts.MaxPayload), 0o644); err != nil {
			log.Close()
			p.mu.Unlock()
			return fmt.Errorf("natstest: %w", err)
		}
		args = append(args, "-c", conf)
	}
	// Not exec.CommandContext: the server lives until Kill or Close, not
	// until the context of this call ends.
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.opts.Dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childSysProcAttr()
	fmt.Fprintf(log, "=== %s %s %q\n", time.Now().Format(time.RFC3339Nano), p.bin, args)
	err = cmd.Start()
	log.Close() // the child has its own descriptor
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("natstest: start nats-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	if err := waitReady(ctx, p.URL(), done); err != nil {
		_ = p.Kill()
		return fmt.Errorf("natstest: nats-server on port %d: %w\n--- end of %s:\n%s", p.opts.Port, err, p.LogPath(), fileTail(p.LogPath()))
	}
	return nil
}

// Kill sends SIGKILL to the server's process group, as a crash would, and
// waits for it; the store stays. It does nothing if the server is not
// running.
func (p *Process) Kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := killGroup(cmd.Process); err != nil {
		return fmt.Errorf("natstest: kill nats-server: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("natstest: nats-server (pid %d) did not exit within 30 s of SIGKILL", cmd.Process.Pid)
	}
}

// Close kills the server and removes its directory when StartProcess
// created it. It is idempotent.
func (p *Process) Close() error {
	err := p.Kill()
	p.removeTemp()
	return err
}

func (p *Process) removeTemp() {
	if p.tmp {
		_ = os.RemoveAll(p.opts.Dir)
	}
}
