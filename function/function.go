package function

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// InitPath is the default path of the init hook; the package manifest's
// "init_path" and [WithInitPath] change it.
const InitPath = "/_faas/init"

// InitFunc is a function's one-time initialization. It runs when the agent
// calls the init hook, with the hook request's context (cancelled when the
// agent gives up); a non-nil error makes the hook fail and may be retried.
type InitFunc func(ctx context.Context) error

type config struct {
	init            InitFunc
	initPath        string
	h2c             bool
	h2cOnly         bool
	host            string
	logger          *slog.Logger
	shutdownTimeout time.Duration
}

// Option configures [Serve] and [Handler].
type Option func(*config)

// WithInit sets the function's init func.
func WithInit(f InitFunc) Option { return func(c *config) { c.init = f } }

// WithInitPath serves the init hook at path instead of InitPath; the
// package manifest must name the same path.
func WithInitPath(path string) Option { return func(c *config) { c.initPath = path } }

// WithH2C makes Serve accept HTTP/2 without TLS (h2c) besides HTTP/1.1, as
// gRPC clients need; set "protocol": "h2c" in the manifest too.
func WithH2C() Option { return func(c *config) { c.h2c = true } }

// WithH2COnly makes Serve accept HTTP/2 without TLS only, as gRPC servers
// do: an HTTP/1.1 request gets its connection closed. An agent whose
// manifest names no protocol detects it and speaks h2c to the function.
func WithH2COnly() Option { return func(c *config) { c.h2c, c.h2cOnly = true, true } }

// WithHost makes Serve listen on host instead of 127.0.0.1.
func WithHost(host string) Option { return func(c *config) { c.host = host } }

// WithLogger sets the logger for the SDK's own messages. Default: JSON
// lines on stderr, which the agent turns into structured records.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithShutdownTimeout bounds the graceful shutdown after SIGTERM. Default
// 5 s; the agent kills the process after its own grace period anyway.
func WithShutdownTimeout(d time.Duration) Option {
	return func(c *config) { c.shutdownTimeout = d }
}

func newConfig(opts []Option) config {
	c := config{initPath: InitPath, host: "127.0.0.1", shutdownTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	if c.logger == nil {
		c.logger = slog.New(stderrJSON())
	}
	return c
}

// Handler returns h wrapped with the init hook: requests to the hook's path
// run the init func (once successfully), and, when there is an init func,
// every other request gets 503 until it has succeeded. Serve uses it; use it
// directly to test a function with net/http/httptest.
func Handler(h http.Handler, opts ...Option) http.Handler {
	c := newConfig(opts)
	return &initHandler{next: h, init: c.init, path: c.initPath, ready: atomicTrueIf(c.init == nil)}
}

func atomicTrueIf(b bool) *atomic.Bool {
	v := new(atomic.Bool)
	v.Store(b)
	return v
}

type initHandler struct {
	next     http.Handler
	init     InitFunc
	path     string
	ready    *atomic.Bool
	mu       sync.Mutex // serializes init attempts
	attempts int
}

func (h *initHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == h.path {
		h.serveInit(w, r)
		return
	}
	if !h.ready.Load() {
		http.Error(w, "function not initialized", http.StatusServiceUnavailable)
		return
	}
	h.next.ServeHTTP(w, r)
}

func (h *initHandler) serveInit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "init hook takes POST", http.StatusMethodNotAllowed)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ready.Load() {
		w.Header().Set("X-Faas-Init-Attempts", strconv.Itoa(h.attempts))
		_, _ = io.WriteString(w, "already initialized\n")
		return
	}
	h.attempts++
	w.Header().Set("X-Faas-Init-Attempts", strconv.Itoa(h.attempts))
	if err := runInit(r.Context(), h.init); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.ready.Store(true)
	_, _ = io.WriteString(w, "initialized\n")
}

// runInit calls f and turns a panic into an error, so that a buggy init
// fails the hook instead of killing the process.
func runInit(ctx context.Context, f InitFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("init panicked: %v", p)
		}
	}()
	return f(ctx)
}

// ErrNoPort is returned by Serve when PORT is not set to a port number.
var ErrNoPort = errors.New("function: PORT is not set to a TCP port (the agent sets it)")

// Serve serves h on 127.0.0.1:$PORT with the init hook (see [Handler])
// until the process gets SIGTERM or SIGINT, then shuts down gracefully and
// returns nil. It returns an error when PORT is missing or the port cannot be
// bound.
func Serve(h http.Handler, opts ...Option) error {
	c := newConfig(opts)
	port, err := strconv.Atoi(os.Getenv("PORT"))
	if err != nil || port <= 0 || port > 65535 {
		return ErrNoPort
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("function: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return ServeListener(ctx, ln, h, opts...)
}

// ServeListener serves h with the init hook on ln until ctx is done, then
// shuts down gracefully (bounded by the shutdown timeout) and returns nil.
// It closes ln.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, opts ...Option) error {
	c := newConfig(opts)
	srv := &http.Server{
		Handler:           Handler(h, opts...),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.logger.Handler(), slog.LevelWarn),
	}
	if c.h2c {
		var p http.Protocols
		p.SetHTTP1(!c.h2cOnly)
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = &p
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	c.logger.Info("function serving", "addr", ln.Addr().String(), "h2c", c.h2c)
	select {
	case err := <-errc:
		return fmt.Errorf("function: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed once Serve has returned
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("function: shutdown: %w", err)
	}
	return nil
}
