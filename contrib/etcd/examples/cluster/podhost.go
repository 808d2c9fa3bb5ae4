package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

// The pod host stands in for a cluster's kubelets: one process that owns
// the shared population of generic pods (real faas-agent processes, via
// pods/local) and lets every dataplane node create, delete and list them
// over HTTP. The nodes' warm pools arbitrate those pods through the etcd
// leases; the pod host arbitrates nothing. It also counts, from the agents'
// own output, how many times each pod was loaded with a function: the proof
// that no pod was ever handed to two nodes.
//
// Its API carries the pods' control tokens, like a kubelet's does: bind it
// to a private network (here, loopback).

// podHost serves a provider over HTTP.
type podHost struct {
	provider warmpool.PodProvider
	loads    *loadCounter
}

func (h *podHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/pods":
		var spec warmpool.PodSpec
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&spec); err != nil {
			http.Error(w, "bad pod spec: "+err.Error(), http.StatusBadRequest)
			return
		}
		pod, err := h.provider.Create(r.Context(), spec)
		if err != nil {
			writeProviderError(w, err)
			return
		}
		writeJSON(w, pod)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/pods/"):
		if err := h.provider.Delete(r.Context(), strings.TrimPrefix(r.URL.Path, "/pods/")); err != nil {
			writeProviderError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/pods":
		pods, err := h.provider.List(r.Context())
		if err != nil {
			writeProviderError(w, err)
			return
		}
		writeJSON(w, pods)
	case r.Method == http.MethodGet && r.URL.Path == "/loads":
		writeJSON(w, h.loads.snapshot())
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeProviderError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, warmpool.ErrPodNotFound):
		status = http.StatusNotFound
	case errors.Is(err, warmpool.ErrPodExists):
		status = http.StatusConflict
	}
	http.Error(w, err.Error(), status)
}

// loadCounter is a slog handler on the agents' output that counts the
// "function loaded" lines of each pod, and the load refusals.
type loadCounter struct {
	next  slog.Handler
	attrs []slog.Attr
	mu    *sync.Mutex
	loads map[string]int // pod → successful loads
}

func newLoadCounter(next slog.Handler) *loadCounter {
	return &loadCounter{next: next, mu: &sync.Mutex{}, loads: map[string]int{}}
}

func (c *loadCounter) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (c *loadCounter) Handle(ctx context.Context, r slog.Record) error {
	// pods/local logs each agent line as the message, with the pod as an
	// attribute of its logger; the agent's text handler writes msg="...".
	if strings.Contains(r.Message, `msg="function loaded"`) {
		pod := ""
		for _, a := range c.attrs {
			if a.Key == "pod" {
				pod = a.Value.String()
			}
		}
		c.mu.Lock()
		c.loads[pod]++
		c.mu.Unlock()
	}
	if c.next.Enabled(ctx, r.Level) {
		return c.next.Handle(ctx, r)
	}
	return nil
}

func (c *loadCounter) WithAttrs(as []slog.Attr) slog.Handler {
	d := *c
	d.attrs = append(append([]slog.Attr(nil), c.attrs...), as...)
	d.next = c.next.WithAttrs(as)
	return &d
}

func (c *loadCounter) WithGroup(name string) slog.Handler {
	d := *c
	d.next = c.next.WithGroup(name)
	return &d
}

func (c *loadCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.loads))
	for k, v := range c.loads {
		out[k] = v
	}
	return out
}

// remotePods is the nodes' warmpool.PodProvider: the pod host's API.
type remotePods struct {
	base   string
	client *http.Client
}

func newRemotePods(base string) *remotePods {
	return &remotePods{base: base, client: &http.Client{Timeout: 30 * time.Second}}
}

func (p *remotePods) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, body)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("pod host: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return warmpool.ErrPodNotFound
	case resp.StatusCode == http.StatusConflict:
		return warmpool.ErrPodExists
	case resp.StatusCode >= 300:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("pod host: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	case out == nil:
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out)
}

// Create implements warmpool.PodProvider.
func (p *remotePods) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	var pod warmpool.Pod
	err := p.do(ctx, http.MethodPost, "/pods", spec, &pod)
	return pod, err
}

// Delete implements warmpool.PodProvider.
func (p *remotePods) Delete(ctx context.Context, id string) error {
	return p.do(ctx, http.MethodDelete, "/pods/"+id, nil, nil)
}

// List implements warmpool.PodProvider.
func (p *remotePods) List(ctx context.Context) ([]warmpool.Pod, error) {
	var pods []warmpool.Pod
	err := p.do(ctx, http.MethodGet, "/pods", nil, &pods)
	return pods, err
}

// loads returns the pod host's count of loads per pod.
func (p *remotePods) loads(ctx context.Context) (map[string]int, error) {
	var m map[string]int
	err := p.do(ctx, http.MethodGet, "/loads", nil, &m)
	return m, err
}

func runPodHost(args []string) error {
	fs := flag.NewFlagSet("podhost", flag.ContinueOnError)
	agent := fs.String("agent", "", "faas-agent binary")
	dir := fs.String("dir", "", "directory of the pods' work dirs and the nodes' code caches")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	loads := newLoadCounter(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pods, err := local.New(ctx, local.Config{AgentPath: *agent, Dir: *dir, Nodes: []string{"host-a", "host-b", "host-c"}, Logger: slog.New(loads)})
	if err != nil {
		return err
	}
	defer pods.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: &podHost{provider: pods, loads: loads}, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("%shttp://%s\n", readyPrefix, ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
