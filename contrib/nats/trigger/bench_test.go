package trigger

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
)

// BenchmarkTriggerVsInvoke measures, in one run against the same
// Dataplane (pods/local, two instances of the recorder function, which
// records nothing here), the messages per second that a Trigger carries
// from a JetStream stream to the function, next to a loop of direct
// Invoke calls with as many in flight as the trigger allows (32). Each
// iteration is one message: run it with -benchtime=Nx.
func BenchmarkTriggerVsInvoke(b *testing.B) {
	s := inProcess(b)
	dp := dataplane(b, "")
	ctx := context.Background()
	const inFlight = 32
	body := []byte(`{"order":12345,"items":["a","b"]}`)
	// Warm: both instances up and connected.
	for range 100 {
		_, err := dp.Invoke(ctx, &faas.Request{FunctionID: "recorder", Body: body})
		require.NoError(b, err)
	}

	b.Run("invoke", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range inFlight {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if resp, err := dp.Invoke(ctx, &faas.Request{FunctionID: "recorder", Body: body}); err != nil || resp.StatusCode != 200 {
						b.Errorf("invoke: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})

	run := 0
	b.Run("trigger", func(b *testing.B) {
		b.ReportAllocs()
		b.StopTimer()
		run++
		str, err := s.js.Stream(ctx, "ORDERS")
		require.NoError(b, err)
		require.NoError(b, str.Purge(ctx))
		msgs := make([]string, b.N)
		for i := range msgs {
			msgs[i] = string(body)
		}
		s.publish(b, msgs...)
		tr, err := New(Config{Dataplane: dp, JetStream: s.js, Stream: "ORDERS", Consumer: fmt.Sprint("bench-", run),
			FunctionID: "recorder", DeadLetterSubject: "dead.orders", MaxInFlight: inFlight})
		require.NoError(b, err)
		b.StartTimer()
		start := time.Now()
		stop := running(b, tr)
		poll := time.NewTicker(time.Millisecond) // the measurement's resolution
		for tr.Stats().Processed < uint64(b.N) {
			<-poll.C
		}
		poll.Stop()
		elapsed := time.Since(start)
		b.StopTimer()
		_ = stop()
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
		if st := tr.Stats(); st.Retried > 0 || st.DeadLettered > 0 {
			b.Logf("retried %d, dead-lettered %d", st.Retried, st.DeadLettered)
		}
	})
}
