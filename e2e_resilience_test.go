package faas

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
)

// traffic runs closed-loop clients against path until stop is closed and
// counts answers by status and error code.
type traffic struct {
	mu     sync.Mutex
	counts map[string]int
	wg     sync.WaitGroup
	stop   chan struct{}
	total  atomic.Int64
}

func startTraffic(e *env, workers int, path string) *traffic {
	tr := &traffic{counts: map[string]int{}, stop: make(chan struct{})}
	for range workers {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for {
				select {
				case <-tr.stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, e.gw.URL+path, nil)
				resp, err := e.gw.Client().Do(req)
				key := "transport error"
				if err == nil {
					key = strconv.Itoa(resp.StatusCode) + " " + resp.Header.Get(lifecycle.HeaderErrorCode)
					resp.Body.Close()
				}
				tr.mu.Lock()
				tr.counts[key]++
				tr.mu.Unlock()
				tr.total.Add(1)
			}
		}()
	}
	return tr
}

func (tr *traffic) halt() map[string]int {
	close(tr.stop)
	tr.wg.Wait()
	return tr.counts
}

// waitRequests waits until the traffic made n more requests.
func (tr *traffic) waitRequests(t *testing.T, n int64) {
	t.Helper()
	target := tr.total.Load() + n
	require.Eventually(t, func() bool { return tr.total.Load() >= target }, 30*time.Second, 5*time.Millisecond)
}

func TestConcurrencyBeyondOneInstanceScalesUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := specFor("sleep", "sleep")
	spec.Mode = concurrency.Exclusive // one request per instance
	e.deploy(spec)
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _, _ = e.do(http.MethodGet, "/invoke/sleep?ms=400", nil, "")
		}()
	}
	wg.Wait()
	for _, s := range statuses {
		assert.Equal(t, http.StatusOK, s)
	}
	fs, _ := e.dp.FunctionStats("sleep")
	assert.GreaterOrEqual(t, fs.ColdStarts.Count, uint64(2), "four concurrent requests on exclusive instances need more than one")
	assert.GreaterOrEqual(t, fs.Routes.Instances, 2)
}

func TestOverloadShedsWithRetryAfterWhileAdmittedSucceed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Shedding = loadshed.Config{Capacity: 4, Burst: -1} })
	spec := specFor("sleep", "sleep")
	spec.MinInstances = 2
	e.deploy(spec)
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("sleep"); return fs.Routes.Routable >= 2 }, 30*time.Second, 10*time.Millisecond)

	tr := startTraffic(e, 32, "/invoke/sleep?ms=100")
	tr.waitRequests(t, 300)
	counts := tr.halt()
	t.Logf("answers: %v", counts)
	assert.Positive(t, counts["200 "], "admitted requests succeed")
	assert.Positive(t, counts["503 shed"], "the excess is shed")
	for k := range counts {
		assert.Contains(t, []string{"200 ", "503 shed"}, k, "no other outcome under overload")
	}
	status, h, _ := func() (int, http.Header, string) {
		// Sample one shed response's headers while overloaded again.
		tr := startTraffic(e, 32, "/invoke/sleep?ms=200")
		defer tr.halt()
		for {
			status, h, b := e.do(http.MethodPost, "/invoke/sleep?ms=1", nil, "")
			if status == http.StatusServiceUnavailable {
				return status, h, b
			}
		}
	}()
	requireWireError(t, status, h, http.StatusServiceUnavailable, lifecycle.CodeShed)
	assert.NotEmpty(t, h.Get("Retry-After"))
}

func TestKilledAgentOnlyCostsItsInFlightRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := specFor("hello", "hello")
	spec.MinInstances = 2
	e.deploy(spec)
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("hello"); return fs.Routes.Routable >= 2 }, 30*time.Second, 10*time.Millisecond)

	tr := startTraffic(e, 4, "/invoke/hello")
	tr.waitRequests(t, 50)
	victim := e.dp.Routes("hello")[0].Instance
	require.NoError(t, e.pods.Kill(victim.PodID))
	// The provider reports the dead pod at once: the route goes before any
	// health check would have noticed (readiness checks run every 2 s).
	require.Eventually(t, func() bool {
		for _, ri := range e.dp.Routes("hello") {
			if ri.Instance.ID == victim.ID {
				return false
			}
		}
		return true
	}, 2*time.Second, 5*time.Millisecond, "the dead instance leaves the routes within one readiness interval")
	require.Eventually(t, func() bool { return victim.State() == lifecycle.Terminated }, 5*time.Second, time.Millisecond)
	// A replacement serves.
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("hello"); return fs.Routes.Routable >= 2 }, 30*time.Second, 10*time.Millisecond)
	tr.waitRequests(t, 200)
	counts := tr.halt()
	t.Logf("answers: %v", counts)
	failed := 0
	for k, n := range counts {
		if k != "200 " {
			failed += n
		}
	}
	assert.LessOrEqual(t, failed, 4, "at most the requests in flight on the killed instance fail (4 clients); the rest are retried or routed elsewhere")
}

func TestSpecUpdateRollsInstancesWithoutFailedRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := specFor("hello", "hello")
	spec.MinInstances = 2
	e.deploy(spec)
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("hello"); return fs.Routes.Routable >= 2 }, 30*time.Second, 10*time.Millisecond)
	old := map[string]bool{}
	for _, ri := range e.dp.Routes("hello") {
		old[ri.Instance.ID] = true
	}

	tr := startTraffic(e, 4, "/invoke/hello")
	tr.waitRequests(t, 50)
	spec.Env = map[string]string{"VERSION": "2"}
	e.deploy(spec)
	require.Eventually(t, func() bool {
		rs := e.dp.Routes("hello")
		if len(rs) < 2 {
			return false
		}
		for _, ri := range rs {
			if old[ri.Instance.ID] || ri.Instance.Generation != 2 {
				return false
			}
		}
		return true
	}, 60*time.Second, 20*time.Millisecond, "every instance replaced by one of generation 2")
	tr.waitRequests(t, 50)
	counts := tr.halt()
	t.Logf("answers: %v", counts)
	assert.Equal(t, 1, len(counts), "only successes: %v", counts)
	assert.Positive(t, counts["200 "])
	fs, _ := e.dp.FunctionStats("hello")
	assert.EqualValues(t, 2, fs.Generation)
}

func TestFlakyInitIsRetriedInTheSameProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := specFor("flaky", "flaky-init")
	spec.Env = map[string]string{"FAIL_INIT_TIMES": "2"}
	spec.InitAttempts = 3
	e.deploy(spec)
	status, _, _ := e.do(http.MethodGet, "/invoke/flaky", nil, "")
	require.Equal(t, http.StatusOK, status)
	fs := e.statsAfter("flaky", 1)
	require.Eventually(t, func() bool { fs, _ = e.dp.FunctionStats("flaky"); return fs.ColdStarts.Count == 1 }, 5*time.Second, time.Millisecond,
		"one cold start, its report delivered")
	assert.EqualValues(t, 0, fs.ColdStarts.Failed)
}

func TestCloseTerminatesInstancesAndDeletesPods(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := specFor("hello", "hello")
	spec.MinInstances = 2
	e.deploy(spec)
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("hello"); return fs.Routes.Routable >= 2 }, 30*time.Second, 10*time.Millisecond)
	insts := e.dp.Routes("hello")
	e.gw.Close()
	require.NoError(t, e.dp.Close())
	require.NoError(t, e.dp.Close(), "idempotent")
	pods, err := e.pods.List(context.Background())
	require.NoError(t, err)
	assert.Empty(t, pods, "the Dataplane deleted its instances' pods and its idle pods")
	for _, ri := range insts {
		assert.Equal(t, lifecycle.Terminated, ri.Instance.State())
	}
	_, err = e.dp.Invoke(context.Background(), &Request{FunctionID: "hello"})
	assert.ErrorIs(t, err, ErrClosed)
}
