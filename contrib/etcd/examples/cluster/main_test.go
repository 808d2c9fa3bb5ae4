package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain lets the test binary play the pod host and the nodes: the
// orchestrator re-executes it with the role in the environment.
func TestMain(m *testing.M) {
	if ok, err := runRole(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// logWriter writes each line to the test log.
type logWriter struct {
	t   *testing.T
	mu  sync.Mutex
	buf strings.Builder
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		s := w.buf.String()
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Log(s[:i])
		w.buf.Reset()
		w.buf.WriteString(s[i+1:])
	}
}

// Three node processes, one embedded etcd, one pod host with real agents:
// a node killed with SIGKILL, restarted, and etcd stopped for ten seconds,
// all under traffic over the three gateways.
func TestClusterSurvivesAKillAndAnEtcdOutage(t *testing.T) {
	o := options{nodes: 3, functions: 12, workers: 12, ttl: 3 * time.Second, outage: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := run(ctx, &logWriter{t: t}, o)
	require.NoError(t, err)

	// A dead node's functions are served by their successors within the
	// lease TTL plus a second, and only its requests fail.
	require.NotEmpty(t, rep.KilledFunctions)
	assert.Len(t, rep.Unavailability, len(rep.KilledFunctions))
	assert.LessOrEqual(t, rep.FailoverP99, o.ttl+time.Second, "failover p99")
	assert.Empty(t, rep.FailedElsewhere, "requests that failed at the kill were all on the dead node")
	assert.Zero(t, rep.FailedAfterKill, "no request sent after the node died fails")
	assert.Positive(t, rep.KillPhaseRequests)
	assert.ElementsMatch(t, rep.KilledFunctions, rep.MovedOnKill, "only the dead node's functions move")
	assert.Empty(t, rep.MovedOnRestart, "and they move back when it returns")
	assert.Positive(t, rep.IdleAdopted, "its idle pods were adopted")

	// No pod is ever loaded by two nodes.
	assert.Positive(t, rep.PodsLoaded)
	assert.Equal(t, 1, rep.MaxLoadsPerPod)
	assert.Zero(t, rep.AlreadyLoaded)

	// etcd down: the functions already routed are served; afterwards cold
	// starts work again, without a restart.
	assert.Positive(t, rep.OutageRequests)
	assert.Zero(t, rep.OutageFailed)
	assert.Positive(t, rep.RecoveredAfter)
	require.NoError(t, rep.verdict(o))
	t.Logf("failover p50 %v p99 %v; %d failed in flight at the kill; %d requests in all, %d failed; recovery after etcd %v",
		rep.FailoverP50, rep.FailoverP99, rep.FailedAtKill, rep.Requests, rep.Failed, rep.RecoveredAfter)
}
