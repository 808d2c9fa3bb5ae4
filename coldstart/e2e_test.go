package coldstart

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/agent"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// agentProvider is a warmpool.PodProvider whose pods are real agents
// (package agent) serving on loopback in this process; the functions they
// load run as real processes. Each node has its own code cache in front of
// a shared origin directory.
type agentProvider struct {
	t      *testing.T
	origin code.Store
	nodes  []string
	caches map[string]*code.DiskCache
	trees  map[string]string // per node: the agents' shared unpacked trees

	mu     sync.Mutex
	next   int
	pods   map[string]warmpool.Pod
	agents map[string]*agentPod
}

type agentPod struct {
	agent  *agent.Agent
	served chan error
}

func newAgentProvider(t *testing.T, origin code.Store, nodes ...string) *agentProvider {
	p := &agentProvider{t: t, origin: origin, nodes: nodes, caches: map[string]*code.DiskCache{}, trees: map[string]string{},
		pods: map[string]warmpool.Pod{}, agents: map[string]*agentPod{}}
	for _, n := range nodes {
		c, err := code.NewDiskCache(code.CacheConfig{Dir: filepath.Join(t.TempDir(), n), MaxBytes: 1 << 30}, origin)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		p.caches[n] = c
		p.trees[n] = filepath.Join(t.TempDir(), n+"-trees")
	}
	return p
}

func (p *agentProvider) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	p.mu.Lock()
	node := p.nodes[p.next%len(p.nodes)]
	p.next++
	p.mu.Unlock()
	token := lifecycle.NewControlToken()
	a, err := agent.New(agent.Config{
		Store: p.caches[node], TreeDir: p.trees[node], WorkDir: filepath.Join(p.t.TempDir(), "work"), Runtime: spec.Runtime, Node: node,
		StopGrace: 2 * time.Second, ControlToken: token,
	})
	if err != nil {
		return warmpool.Pod{}, err
	}
	lns, err := agent.Listen(agent.Addrs{Invoke: "127.0.0.1:0", Control: "127.0.0.1:0"})
	if err != nil {
		_ = a.Close()
		return warmpool.Pod{}, err
	}
	ap := &agentPod{agent: a, served: make(chan error, 1)}
	go func() { ap.served <- a.Serve(context.Background(), lns) }()
	pod := warmpool.Pod{ID: spec.Name, Node: node, Addr: lns.Invoke.Addr().String(),
		Control: lifecycle.Control{Addr: lns.Control.Addr().String(), Token: token}, Runtime: spec.Runtime, Created: time.Now()}
	p.mu.Lock()
	p.pods[pod.ID], p.agents[pod.ID] = pod, ap
	p.mu.Unlock()
	return pod, nil
}

func (p *agentProvider) Delete(_ context.Context, id string) error {
	p.mu.Lock()
	ap, ok := p.agents[id]
	delete(p.agents, id)
	delete(p.pods, id)
	p.mu.Unlock()
	if !ok {
		return warmpool.ErrPodNotFound
	}
	err := ap.agent.Close()
	<-ap.served
	return err
}

func (p *agentProvider) List(context.Context) ([]warmpool.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]warmpool.Pod, 0, len(p.pods))
	for _, pod := range p.pods {
		out = append(out, pod)
	}
	slices.SortFunc(out, func(a, b warmpool.Pod) int { return cmpString(a.ID, b.ID) })
	return out, nil
}

func (p *agentProvider) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.pods[id]
	return ok
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fnPackage returns a .tar.gz of the built example function fn with its
// manifest.
func fnPackage(t *testing.T, fn string) []byte {
	bin, err := os.ReadFile(filepath.Join(binDir, fn))
	require.NoError(t, err)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		name string
		body []byte
		mode int64
	}{{"faas.json", []byte(`{"command":"./` + fn + `"}`), 0o644}, {fn, bin, 0o755}} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(e.body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// TestEndToEndThroughRealAgents runs cold starts from a warm pool of real
// agents: the pool probes them with GET /v1/ping, the Starter loads real
// function packages through the nodes' code caches with the real
// lifecycle client, retries a flaky init hook in the same process, prefers
// the node that caches the code, and deletes the pod of a failed cold
// start.
func TestEndToEndThroughRealAgents(t *testing.T) {
	originDir := t.TempDir()
	origin, err := code.NewDirStore(originDir)
	require.NoError(t, err)
	defer origin.Close()
	publish := func(name string, pkg []byte) lifecycle.CodeRef {
		require.NoError(t, os.WriteFile(filepath.Join(originDir, name), pkg, 0o644))
		r := code.RefFor("file://"+filepath.Join(originDir, name), pkg)
		return lifecycle.CodeRef{URI: r.URI, Digest: r.Digest, Size: r.Size}
	}
	helloRef := publish("hello.tar.gz", fnPackage(t, "hello"))
	flakyRef := publish("flaky.tar.gz", fnPackage(t, "flaky-init"))

	provider := newAgentProvider(t, origin, "n1", "n2")
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	pool, err := warmpool.New(provider, warmpool.Config{
		Runtimes:      map[string]warmpool.RuntimeConfig{"go": {Min: 3, Max: 6}},
		Prober:        &warmpool.HTTPProber{Client: &http.Client{Transport: transport}},
		ProbeInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	defer pool.Close()
	client, err := lifecycle.NewClient(lifecycle.ClientConfig{HTTPClient: &http.Client{Transport: transport}})
	require.NoError(t, err)
	var mu sync.Mutex
	var reports []Report
	starter, err := New(pool, client, Config{
		InitRetryDelay: time.Millisecond,
		Locality: LocalityFunc(func(node, digest string) bool {
			c := provider.caches[node]
			return c != nil && c.Has(digest)
		}),
	}, Hooks{OnColdStart: func(r Report) { mu.Lock(); reports = append(reports, r); mu.Unlock() }})
	require.NoError(t, err)
	defer starter.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The pool fills with agents that pass the real probe (404 no_function).
	require.Eventually(t, func() bool { return pool.Stats().Runtimes["go"].Idle == 3 }, time.Minute, 5*time.Millisecond)

	hello := Function{ID: "e2e/hello", Runtime: "go", Code: helloRef, Limits: lifecycle.Limits{Concurrency: 2}}
	first, err := starter.Ensure(ctx, hello, 1)
	require.NoError(t, err)
	assert.Equal(t, lifecycle.Ready, first.Instance.State())
	assert.True(t, provider.caches[first.Pod.Node].Has(helloRef.Digest), "the agent fetched through its node's cache")

	// The instance serves.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+first.Pod.Addr+"/", nil)
	req.Header.Set(lifecycle.HeaderFunctionID, hello.ID)
	resp, err := (&http.Client{Transport: transport}).Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// The next cold starts of hello prefer the node that caches its code,
	// as long as it has an idle pod.
	second, err := starter.Start(ctx, hello)
	require.NoError(t, err)
	assert.Equal(t, first.Pod.Node, second.Pod.Node)
	assert.True(t, second.Breakdown.CacheHit, "the node's agents share unpacked trees")

	// A flaky init hook is retried in the same process.
	flaky := Function{ID: "e2e/flaky", Runtime: "go", Code: flakyRef, Env: map[string]string{"FAIL_INIT_TIMES": "2"}}
	res, err := starter.Start(ctx, flaky)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Breakdown.InitAttempts)

	// A reference whose digest the origin's bytes do not match fails in
	// the fetch step, and its pod is deleted.
	bad := hello
	bad.ID = "e2e/bad"
	bad.Code.Digest = code.DigestOf([]byte("something else"))
	_, err = starter.Start(ctx, bad)
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, StepFetch, se.Step)
	require.ErrorIs(t, err, lifecycle.CodeBadPackage)
	assert.False(t, provider.has(se.PodID), "the failed pod is gone")

	// Every cold start reported its breakdown.
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, reports, 4)
	for _, r := range reports[:3] {
		require.NoError(t, r.Err)
		assert.Positive(t, r.Breakdown.Load)
		assert.Positive(t, r.Breakdown.Total)
		t.Logf("%s on %s: take %v, fetch %v, load %v (tree cache hit %v), init %v (%d attempts), total %v", r.FunctionID, r.Node,
			r.Breakdown.Take, r.Breakdown.Fetch, r.Breakdown.Load, r.Breakdown.CacheHit, r.Breakdown.Init, r.Breakdown.InitAttempts, r.Breakdown.Total)
	}
	assert.True(t, errors.Is(reports[3].Err, lifecycle.CodeBadPackage), fmt.Sprint(reports[3].Err))

	// Cleanup: the Ready instances' pods are the caller's to delete.
	for _, p := range []warmpool.Pod{first.Pod, second.Pod, res.Pod} {
		require.NoError(t, pool.Delete(ctx, p))
	}
}
