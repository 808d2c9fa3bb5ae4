package trigger

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/contrib/nats/internal/testenv"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

// built holds the binaries of the end-to-end tests, built once per test
// binary in one go command.
var built struct {
	once     sync.Once
	err      error
	dir      string
	agent    string
	worker   string
	recorder code.Ref
	pkgPath  string
}

func binaries(t testing.TB) {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "trigger-e2e-*"); built.err != nil {
			return
		}
		bins, err := testenv.Build(context.Background(), filepath.Join(built.dir, "bin"), testenv.AgentPackage,
			"github.com/faasplane/faas/contrib/nats/internal/testfn/recorder", "github.com/faasplane/faas/contrib/nats/internal/mqworker")
		if err != nil {
			built.err = err
			return
		}
		built.agent, built.worker = bins[0], bins[2]
		built.recorder, built.err = testenv.Pack(bins[1], built.dir, code.Manifest{})
		built.pkgPath = strings.TrimPrefix(built.recorder.URI, "file://")
	})
	require.NoError(t, built.err)
}

// dataplane is a running Dataplane over pods/local with the recorder
// function deployed as "recorder", appending to record.
func dataplane(t testing.TB, record string) *faas.Dataplane {
	t.Helper()
	binaries(t)
	ctx := context.Background()
	pods, err := local.New(ctx, local.Config{AgentPath: built.agent})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pods.Close() })
	origin, err := code.NewOrigin(code.OriginConfig{Dir: built.dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = origin.Close() })
	dp, err := faas.New(faas.Config{Pods: pods, Code: origin,
		Pool: warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 4}}, ProbeInterval: -1}})
	require.NoError(t, err)
	require.NoError(t, dp.Start(ctx))
	t.Cleanup(func() { _ = dp.Close() })
	require.NoError(t, dp.Deploy(ctx, faas.FunctionSpec{ID: "recorder", Runtime: "go", Code: built.recorder,
		Concurrency: 32, MinInstances: 2, Env: map[string]string{"RECORD_FILE": record}}))
	return dp
}

// tally is what the function recorded: deliveries per request ID.
type tally struct {
	lines   int
	byID    map[string]int
	repeats int // lines whose delivery count was above 1
}

func readRecord(t testing.TB, path string) tally {
	t.Helper()
	tl := tally{byID: map[string]int{}}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return tl
	}
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, delivery, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue // a line being written
		}
		tl.lines++
		tl.byID[id]++
		if delivery != "1" {
			tl.repeats++
		}
	}
	require.NoError(t, sc.Err())
	return tl
}

// duplicates counts the lines beyond each ID's first.
func (tl tally) duplicates() int { return tl.lines - len(tl.byID) }

// missing returns the request IDs of messages 1..n of ORDERS that the
// function never recorded.
func (tl tally) missing(n int) []string {
	var out []string
	for seq := 1; seq <= n; seq++ {
		if id := RequestID("ORDERS", uint64(seq)); tl.byID[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

func bodies(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"order":%d}`, i)
	}
	return out
}

// A real dataplane and function: every message processed once, failures
// retried and dead-lettered with the function's answer.
func TestTriggerWithDataplane(t *testing.T) {
	s := inProcess(t)
	record := filepath.Join(t.TempDir(), "record")
	dp := dataplane(t, record)
	tr, err := New(Config{Dataplane: dp, JetStream: s.js, Stream: "ORDERS", Consumer: "orders", FunctionID: "recorder",
		DeadLetterSubject: "dead.orders", MaxDeliveries: 3, Backoff: func(uint64) time.Duration { return 10 * time.Millisecond }})
	require.NoError(t, err)
	msgs := append(bodies(1000), "fail:500", "fail:503:1", "fail:400")
	s.publish(t, msgs...)
	running(t, tr)
	require.Eventually(t, func() bool {
		st := tr.Stats()
		return st.Processed == 1002 && st.DeadLettered == 1
	}, time.Minute, 10*time.Millisecond, "%+v", tr.Stats())
	tl := readRecord(t, record)
	assert.Empty(t, tl.missing(1003))
	assert.Equal(t, 1003+2+1, tl.lines, "fail:500 three times, fail:503:1 twice")
	assert.Equal(t, 3, tl.repeats)
	dead := s.deadLetters(t)
	require.Len(t, dead, 1)
	assert.Equal(t, "fail:500", string(dead[0].Data))
	assert.Equal(t, "ORDERS-1001", dead[0].Header.Get("X-Faas-Request-Id"))
	assert.Equal(t, "500", dead[0].Header.Get(HeaderStatus))
}
