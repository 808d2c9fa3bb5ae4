package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure a server started by [Start] or [StartProcess].
type Options struct {
	// Dir holds the JetStream store (Dir/jetstream) and, for a process,
	// its log (Dir/nats-server.log). Empty means a temporary directory
	// that Close removes.
	Dir string
	// Port is the client port on 127.0.0.1. Zero picks a free one, kept
	// across restarts.
	Port int
	// MaxPayload bounds a message (zero: the server's default, 1 MiB).
	MaxPayload int32
}

// Server is a NATS server with JetStream running in the test process.
type Server struct {
	opts Options
	tmp  bool

	mu  sync.Mutex
	srv *server.Server
}

// Start starts a server in-process and returns once it accepts
// connections.
func Start(opts Options) (*Server, error) {
	opts, tmp, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, tmp: tmp}
	if err := s.start(); err != nil {
		s.removeTemp()
		return nil, err
	}
	return s, nil
}

// prepare fills in the directory and the port.
func prepare(opts Options) (Options, bool, error) {
	tmp := false
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "natstest-*")
		if err != nil {
			return opts, false, fmt.Errorf("natstest: %w", err)
		}
		opts.Dir, tmp = d, true
	}
	if opts.Port == 0 {
		p, err := freePort()
		if err != nil {
			if tmp {
				_ = os.RemoveAll(opts.Dir)
			}
			return opts, false, err
		}
		opts.Port = p
	}
	return opts, tmp, nil
}

// freePort returns a port on 127.0.0.1 that was free a moment ago. The
// server binds it itself, so that a restart can bind it again.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("natstest: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	srv, err := server.NewServer(&server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       s.opts.Port,
		JetStream:  true,
		StoreDir:   s.opts.Dir,
		MaxPayload: s.opts.MaxPayload,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return fmt.Errorf("natstest: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("natstest: server on port %d not ready within 10 s", s.opts.Port)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

// URL returns the client URL, nats://127.0.0.1:port.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.opts.Port) }

// Dir returns the server's directory.
func (s *Server) Dir() string { return s.opts.Dir }

// Shutdown stops the server and waits for it, keeping its store; clients
// see the connection drop. Start it again with [Server.Restart].
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart stops the server (if it runs) and starts it again on the same
// port and store.
func (s *Server) Restart() error {
	s.Shutdown()
	return s.start()
}

// Close stops the server and removes its directory when Start created it.
// It is idempotent.
func (s *Server) Close() error {
	s.Shutdown()
	s.removeTemp()
	return nil
}

func (s *Server) removeTemp() {
	if s.tmp {
		_ = os.RemoveAll(s.opts.Dir)
	}
}

// Connect connects to url as tests want it: reconnecting forever every
// 20 ms, so that a restarted server is found again at once, with opts
// applied after those defaults.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond), nats.Timeout(2 * time.Second)}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("natstest: connect %s: %w", url, err)
	}
	return nc, nil
}

// waitReady waits until a server at url serves JetStream requests.
func waitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	var last error
	for {
		nc, err := nats.Connect(url, nats.Timeout(500*time.Millisecond), nats.NoReconnect())
		if err == nil {
			js, jerr := jetstream.New(nc)
			if jerr == nil {
				actx, cancel := context.WithTimeout(ctx, time.Second)
				_, jerr = js.AccountInfo(actx)
				cancel()
			}
			nc.Close()
			if jerr == nil {
				return nil
			}
			err = jerr
		}
		last = err
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), last)
		case <-exited:
			t.Stop()
			return fmt.Errorf("natstest: server exited before it was ready (last error: %v)", last)
		case <-t.C:
		}
	}
}
