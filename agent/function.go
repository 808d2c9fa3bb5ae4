package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/internal/latency"
	"github.com/faasplane/faas/lifecycle"
)

// function is the loaded function: its process, the proxy to it, its
// concurrency slots and counters.
type function struct {
	id             string
	protocol       string
	protocolSource string
	dir            string
	initPath       string // "" when the function has no init hook
	proc           *process
	boot           *bootstrapProc // the bootstrap it runs in, nil for an exec'd process
	hot            bool           // hot-loaded into a bootstrap started with the agent
	slots          *concurrency.Slots
	transport      *http.Transport
	proxy          *httputil.ReverseProxy
	timeout        time.Duration // per invocation; 0 means none
	limits         lifecycle.Limits
	memLimit       string // how the memory limit is enforced
	cpuLimit       string // how the CPU limit is enforced

	ready    atomic.Bool
	initMu   sync.Mutex // serializes init attempts
	attempts int        // guarded by initMu

	// failed counts the invocations that got no answer, a 5xx, or were
	// aborted; latency records every invocation that reached the
	// function, so its count is the number completed; billed sums their
	// billed milliseconds.
	failed  atomic.Int64
	billed  atomic.Int64
	latency latency.Histogram
}

// loadedSpec is what newFunction needs beyond the load request.
type loadedSpec struct {
	protocol, protocolSource string
	initPath                 string
	dir                      string
	proc                     *process
	boot                     *bootstrapProc
	hot                      bool
	lim                      *limits
}

func newFunction(req *lifecycle.LoadRequest, s loadedSpec, log *slog.Logger) *function {
	limit := max(req.Limits.Concurrency, 1)
	f := &function{
		id:             req.FunctionID,
		protocol:       s.protocol,
		protocolSource: s.protocolSource,
		dir:            s.dir,
		initPath:       s.initPath,
		proc:           s.proc,
		boot:           s.boot,
		hot:            s.hot,
		slots:          concurrency.NewSlots(concurrency.Shared, limit),
		timeout:        time.Duration(req.Limits.TimeoutMillis) * time.Millisecond,
		limits:         req.Limits,
		memLimit:       lifecycle.MemoryLimitNone,
		cpuLimit:       lifecycle.MemoryLimitNone,
	}
	if s.lim != nil {
		f.memLimit, f.cpuLimit = s.lim.mem, s.lim.cpu
	}
	f.transport = newTransport(s.protocol, limit)
	f.proxy = f.newProxy(log.With("function_id", req.FunctionID))
	return f
}

// newTransport returns the transport to one function process: keep-alive
// with an idle pool as large as the instance's concurrency (so a burst at
// the limit reuses connections instead of dialing), no compression (the
// bytes cross loopback), and HTTP/2 without TLS for h2c functions.
func newTransport(protocol string, concurrency int) *http.Transport {
	idle := min(concurrency, 1024)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     32 << 10,
		ReadBufferSize:      32 << 10,
	}
	if protocol == lifecycle.ProtocolH2C {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	return tr
}

// stop stops the process group (and the bootstrap's pipes) and drops idle
// connections to it.
func (f *function) stop(grace time.Duration) {
	if f.boot != nil {
		f.boot.stop(grace)
	} else {
		f.proc.stop(grace)
	}
	f.transport.CloseIdleConnections()
}

// errProcessExited is callInit's error when the process died under it.
var errProcessExited = errors.New("function process exited")

// callInit calls the init hook once: POST initPath on the process. A 2xx
// answer is success; anything else is an error carrying the function's
// message (the first line of its body, at most 512 bytes).
func (f *function) callInit(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+f.proc.addr+f.initPath, http.NoBody)
	if err != nil {
		return err
	}
	req.Header.Set(lifecycle.HeaderFunctionID, f.id)
	resp, err := f.transport.RoundTrip(req)
	if err != nil {
		if f.proc.exited.Load() {
			return errProcessExited
		}
		if ctx.Err() != nil {
			return fmt.Errorf("init hook did not answer within %v", timeout)
		}
		return fmt.Errorf("init hook unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	msg := strings.TrimSpace(string(body))
	if msg == "" {
		msg = "(no message)"
	}
	return fmt.Errorf("init hook answered HTTP %d: %s", resp.StatusCode, msg)
}
