package trigger

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/contrib/nats/natstest"
)

// The NATS server is a separate process, killed with SIGKILL mid-stream and
// started again on its store: the stream and the durable consumer come
// back from disk, the trigger reconnects, and every message is processed
// at least once.
func TestTriggerSurvivesServerRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := natstest.StartProcess(ctx, natstest.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Close()
	s := newStream(t, srv.URL())
	record := filepath.Join(t.TempDir(), "record")
	dp := dataplane(t, record)
	const n = 2000
	s.publish(t, bodies(n)...)
	tr, err := New(Config{Dataplane: dp, JetStream: s.js, Stream: "ORDERS", Consumer: "orders", FunctionID: "recorder",
		DeadLetterSubject: "dead.orders", AckWait: 2 * time.Second, Idempotent: true})
	require.NoError(t, err)
	running(t, tr)

	require.Eventually(t, func() bool { return readRecord(t, record).lines >= n/4 }, time.Minute, 5*time.Millisecond)
	pid := srv.PID()
	require.NoError(t, srv.Kill())
	killedAt := readRecord(t, record)
	require.NoError(t, srv.Start(ctx))
	require.NotEqual(t, pid, srv.PID())

	start := time.Now()
	require.Eventually(t, func() bool {
		if len(readRecord(t, record).byID) < n {
			return false
		}
		p, ap := s.pending(t, "orders")
		return p == 0 && ap == 0
	}, time.Minute, 20*time.Millisecond)
	tl := readRecord(t, record)
	assert.Empty(t, tl.missing(n), "every message processed at least once")
	assert.Len(t, tl.byID, n, "and no other")
	str, err := s.js.Stream(ctx, "ORDERS")
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(n), info.State.Msgs, "the stream came back from disk")
	st := tr.Stats()
	t.Logf("server killed after %d of %d messages: all %d processed, %d duplicates (%d deliveries beyond the first), %d settle errors; %v from restart to the end",
		len(killedAt.byID), n, len(tl.byID), tl.duplicates(), tl.repeats, st.SettleErrors, time.Since(start).Round(time.Millisecond))
}
