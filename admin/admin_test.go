package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/admin"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/internal/fnbuild"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

var (
	agentBin string
	hello    fnbuild.Function
	buildDir string
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	var err error
	buildDir, err = os.MkdirTemp("", "faas-admin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(buildDir)
	bins, err := fnbuild.BuildAll(context.Background(), filepath.Join(buildDir, "bin"), local.AgentPackage, fnbuild.ExamplePackage("hello"))
	if err == nil {
		agentBin = bins[0]
		hello, err = fnbuild.PackBinary(bins[1], "hello", code.Manifest{}, buildDir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// running starts a Dataplane over local agents with hello deployed and
// cold-started by one request, and serves its status page.
func running(t *testing.T) (*faas.Dataplane, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	pods, err := local.New(ctx, local.Config{AgentPath: agentBin, Nodes: []string{"node-a", "node-b"}})
	require.NoError(t, err)
	origin, err := code.NewOrigin(code.OriginConfig{Dir: buildDir})
	require.NoError(t, err)
	dp, err := faas.New(faas.Config{Pods: pods, Code: origin,
		Pool: warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 2}}, ProbeInterval: -1}})
	require.NoError(t, err)
	require.NoError(t, dp.Start(ctx))
	t.Cleanup(func() {
		require.NoError(t, dp.Close())
		require.NoError(t, pods.Close())
		origin.Close()
	})
	require.NoError(t, dp.Deploy(ctx, faas.FunctionSpec{ID: "hello", Runtime: "go", Code: hello.Ref, Concurrency: 4, MemoryBytes: 256 << 20}))
	resp, err := dp.Invoke(ctx, &faas.Request{FunctionID: "hello"})
	require.NoError(t, err)
	require.True(t, resp.Waited, "the request cold-started an instance")
	h, err := admin.New(dp, admin.Config{Refresh: -1})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return dp, srv
}

func get(t *testing.T, url string) (string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b), resp.Header
}

// tokens returns the control tokens of the Dataplane's instances.
func tokens(t *testing.T, dp *faas.Dataplane) []string {
	t.Helper()
	var out []string
	for _, fn := range dp.Functions() {
		for _, ri := range dp.Routes(fn) {
			require.NotEmpty(t, ri.Instance.Control.Token)
			out = append(out, ri.Instance.Control.Token)
		}
	}
	require.NotEmpty(t, out)
	return out
}

func TestStatusAsJSON(t *testing.T) {
	dp, srv := running(t)
	body, h := get(t, srv.URL+"/status.json")
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	var st admin.Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Len(t, st.Functions, 1)
	fn := st.Functions[0]
	assert.Equal(t, "hello", fn.ID)
	assert.EqualValues(t, 256<<20, fn.MemoryBytes)
	assert.EqualValues(t, 1, fn.Requests)
	assert.EqualValues(t, 1, fn.Cold)
	require.Len(t, fn.Instances, 1)
	inst := fn.Instances[0]
	assert.Equal(t, "Ready", inst.State)
	assert.Equal(t, "closed", inst.Breaker)
	assert.True(t, inst.Routable)
	assert.Equal(t, 4, inst.Limit)
	require.Len(t, fn.ColdStarts, 1, "the cold start appears")
	cs := fn.ColdStarts[0]
	assert.Equal(t, inst.ID, cs.Instance)
	assert.Positive(t, cs.TotalMillis)
	assert.Positive(t, cs.LoadMillis)
	assert.Empty(t, cs.Error)
	require.NotEmpty(t, st.ColdStarts)
	assert.Equal(t, cs.Instance, st.ColdStarts[0].Instance)
	require.Len(t, st.Pools, 1)
	assert.Equal(t, "go", st.Pools[0].Runtime)
	assert.Positive(t, st.Pools[0].Created)
	require.Len(t, st.Nodes, 1)
	assert.Equal(t, inst.Node, st.Nodes[0].Node)
	assert.Equal(t, 1, st.Nodes[0].ByState["Ready"])
	for _, tok := range tokens(t, dp) {
		assert.NotContains(t, body, tok, "the page never shows a control token")
	}
	same, _ := get(t, srv.URL+"/?format=json")
	assert.Contains(t, same, `"id": "hello"`)
}

// chromium runs headless Chromium on args; the test installs nothing, so
// a missing browser fails it with the command that installs one.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	require.NoError(t, err, "headless Chromium is needed: apt-get install -y chromium")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium: %s", stderr.String())
	return out
}

// TestPageInHeadlessChromium loads the HTML page in a real browser against
// a running Dataplane: the cold start and the instance appear, no token
// does, and a screenshot is taken (into the test's temporary directory).
func TestPageInHeadlessChromium(t *testing.T) {
	dp, srv := running(t)
	inst := dp.Routes("hello")[0].Instance
	dom := string(chromium(t, "--dump-dom", srv.URL+"/"))
	require.Contains(t, dom, `<h1>faasplane dataplane <span id="node">dataplane</span></h1>`)
	assert.Contains(t, dom, `class="coldstart" data-function="hello" data-instance="`+inst.ID+`"`, "the cold start is listed")
	assert.Contains(t, dom, `class="fn-coldstart" data-instance="`+inst.ID+`"`, "under its function too")
	assert.Contains(t, dom, `class="instance" data-instance="`+inst.ID+`" data-state="ready"`)
	assert.Contains(t, dom, `class="pool" data-runtime="go"`)
	assert.Contains(t, dom, `class="node" data-node="`+inst.Node+`"`)
	assert.Contains(t, dom, "admitting")
	for _, tok := range tokens(t, dp) {
		assert.NotContains(t, dom, tok)
	}

	shot := filepath.Join(t.TempDir(), "admin.png")
	chromium(t, "--window-size=1280,1600", "--screenshot="+shot, srv.URL+"/")
	png, err := os.ReadFile(shot)
	require.NoError(t, err)
	require.Greater(t, len(png), 1000)
	assert.Equal(t, []byte("\x89PNG\r\n\x1a\n"), png[:8])
	if dir := os.Getenv("FAAS_ADMIN_SCREENSHOT_DIR"); dir != "" { // to look at it
		require.NoError(t, os.WriteFile(filepath.Join(dir, "admin.png"), png, 0o644))
	}
}

func TestNewValidatesAndPageRefusesWrites(t *testing.T) {
	_, err := admin.New(nil, admin.Config{})
	require.Error(t, err)
	dp := notStarted(t)
	_, err = admin.New(dp, admin.Config{ColdStarts: -1})
	require.ErrorIs(t, err, admin.ErrInvalidConfig)
	h, err := admin.New(dp, admin.Config{})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), `<meta http-equiv="refresh" content="2">`)
	assert.Contains(t, rec.Body.String(), "no warm pool (the Dataplane is not running)")
	assert.Contains(t, rec.Body.String(), `id="fn-quiet"`)
	assert.NotEmpty(t, rec.Header().Get("Content-Security-Policy"))
}

func TestMaxFunctionsShowsTheBusiest(t *testing.T) {
	h, err := admin.New(notStarted(t, "a", "b", "c"), admin.Config{MaxFunctions: 2})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?format=json", nil))
	var st admin.Status
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
	assert.Len(t, st.Functions, 2)
	assert.Equal(t, 2, st.HiddenFunctions)
}

// notStarted is a Dataplane over fakes, not started, with functions
// deployed ("quiet" when none are named).
func notStarted(t *testing.T, ids ...string) *faas.Dataplane {
	t.Helper()
	store := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	ref := store.Add([]byte("package"))
	ref.URI = "fake://x"
	dp, err := faas.New(faas.Config{Pods: faastest.NewPodProvider(faastest.PodProviderConfig{}), Code: store})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dp.Close() })
	for _, id := range append(ids, "quiet") {
		require.NoError(t, dp.Deploy(context.Background(), faas.FunctionSpec{ID: id, Runtime: "go", Code: ref}))
	}
	return dp
}
