package faas

import (
	"context"
	"testing"
	"time"

	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// BenchmarkHotPathRecorded is BenchmarkHotPath with the end of the call
// recorded as the gateway and Invoke do: the statistics, the observer
// (NopObserver) and, with a sink, the usage record into the meter's
// buffer (drained by its goroutine into a sink that keeps nothing).
func BenchmarkHotPathRecorded(b *testing.B) {
	discard := UsageSinkFunc(func(context.Context, []UsageRecord) error { return nil })
	for _, bc := range []struct {
		name string
		sink UsageSink
	}{{"usage=off", nil}, {"usage=on", discard}} {
		d := newRoutedDataplane(b, 1, 100, func(c *Config) { c.Usage.Sink = bc.sink })
		d.usage.start()
		b.Cleanup(func() { _ = d.usage.stop() })
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				fn := d.lookup("hot")
				c, err := admitCall(d, ctx, fn, "caller", loadshed.Default, now)
				if err != nil {
					b.Fatal(err)
				}
				c.sent = now
				c.end(now, router.Success)
				c.finish(nil)
			}
			if s := d.Stats().Usage; s.Dropped > 0 {
				b.Logf("usage records dropped: %d of %d (the drain is slower than this loop)", s.Dropped, s.Records)
			}
		})
	}
}
