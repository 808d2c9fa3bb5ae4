// Command custom-provider wires a platform team's own plug-ins into a
// Dataplane: a warmpool.PodProvider whose pods are agents served in this
// process (agent.New), and a code.Store over an in-memory map (your blob
// store's client). Functions still run as processes started by the agents.
package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/agent"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// memStore is a code.Store over a map of packages keyed by digest.
type memStore struct {
	mu   sync.RWMutex
	pkgs map[string][]byte
}

func (s *memStore) Open(_ context.Context, ref code.Ref) (io.ReadCloser, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pkg, ok := s.pkgs[ref.Digest]
	if !ok {
		return nil, fmt.Errorf("%w: %s", code.ErrNotFound, ref.Digest)
	}
	return io.NopCloser(bytes.NewReader(pkg)), nil // callers verify the digest
}

// inProcessPods is a warmpool.PodProvider whose pods are agents served by
// this process.
type inProcessPods struct {
	store code.Store
	dir   string
	mu    sync.Mutex
	seq   int
	pods  map[string]*inProcessPod
}

type inProcessPod struct {
	pod    warmpool.Pod
	cancel context.CancelFunc
	done   chan struct{}
}

func (p *inProcessPods) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	p.mu.Lock()
	p.seq++
	id := cmp.Or(spec.Name, "pod-"+strconv.Itoa(p.seq))
	p.mu.Unlock()
	lns, err := agent.Listen(agent.Addrs{Invoke: "127.0.0.1:0", Control: "127.0.0.1:0"})
	if err != nil {
		return warmpool.Pod{}, err
	}
	// Every pod gets its own control token; only the dataplane learns it.
	token := lifecycle.NewControlToken()
	a, err := agent.New(agent.Config{Store: p.store, WorkDir: filepath.Join(p.dir, id), Runtime: spec.Runtime, Node: "this-process", ControlToken: token})
	if err != nil {
		lns.Close()
		return warmpool.Pod{}, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	ip := &inProcessPod{cancel: cancel, done: make(chan struct{}),
		pod: warmpool.Pod{ID: id, Node: "this-process", Runtime: spec.Runtime, Labels: spec.Labels,
			Addr:    lns.Invoke.Addr().String(),
			Control: lifecycle.Control{Addr: lns.Control.Addr().String(), Token: token}}}
	go func() { defer close(ip.done); _ = a.Serve(sctx, lns) }()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pods[id] = ip
	return ip.pod, nil
}

func (p *inProcessPods) Delete(_ context.Context, id string) error {
	p.mu.Lock()
	ip, ok := p.pods[id]
	delete(p.pods, id)
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", warmpool.ErrPodNotFound, id)
	}
	ip.cancel() // the agent stops its function process
	<-ip.done
	return nil
}

func (p *inProcessPods) List(context.Context) ([]warmpool.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]warmpool.Pod, 0, len(p.pods))
	for _, ip := range p.pods {
		out = append(out, ip.pod)
	}
	return out, nil
}

func run(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "custom-provider-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	// The hello function, compiled and packed with its faas.json.
	pkg, err := code.PackGo(ctx, "github.com/faasplane/faas/examples/functions/hello", code.Manifest{})
	if err != nil {
		return "", err
	}
	ref := code.RefFor("mem://hello", pkg)
	store := &memStore{pkgs: map[string][]byte{ref.Digest: pkg}}
	pods := &inProcessPods{store: store, dir: filepath.Join(dir, "pods"), pods: map[string]*inProcessPod{}}

	dp, err := faas.New(faas.Config{Pods: pods, Code: store})
	if err != nil {
		return "", err
	}
	defer dp.Close()
	if err := dp.Start(ctx); err != nil {
		return "", err
	}
	if err := dp.Deploy(ctx, faas.FunctionSpec{ID: "hello", Runtime: "go", Code: ref}); err != nil {
		return "", err
	}
	resp, err := dp.Invoke(ctx, &faas.Request{FunctionID: "hello", Body: []byte("from my own provider")})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(resp.Body)), nil
}

func main() {
	out, err := run(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "custom-provider:", err)
		os.Exit(1)
	}
	fmt.Println(out) // 200 Hello, from my own provider
}
