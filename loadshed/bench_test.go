package loadshed

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Times advance 1 µs per request, so a control step runs every 100,000
// requests, as it would at 1M requests per second; its cost is included.

func BenchmarkAdmitDone(b *testing.B) {
	for _, callers := range []int{1, 1000} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := newShedder(b, Config{})
			names := make([]string, callers)
			for i := range names {
				names[i] = fmt.Sprintf("caller-%d", i)
			}
			now := epoch
			for _, n := range names { // known callers: the steady state
				tk, _ := s.Admit(now, n, Default)
				tk.Done(now, Success)
			}
			s.Tick(now.Add(time.Second))
			now = now.Add(time.Second)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				now = now.Add(time.Microsecond)
				tk, err := s.Admit(now, names[i%callers], Default)
				if err != nil {
					b.Fatal(err)
				}
				tk.Done(now, Success)
			}
		})
	}
}

// The refusal path: shedding on, a Sheddable request.
func BenchmarkAdmitShed(b *testing.B) {
	sig := &switchable{}
	sig.on.Store(true)
	s := newShedder(b, Config{Capacity: 100, Signals: []Signal{sig}})
	now := epoch
	s.Tick(now)
	s.Tick(now.Add(DefaultInterval))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if _, err := s.Admit(now, "bulk", Sheddable); err == nil {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkAdmitDoneParallel(b *testing.B) {
	s := newShedder(b, Config{})
	names := make([]string, 64)
	for i := range names {
		names[i] = fmt.Sprintf("caller-%d", i)
	}
	var id atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		g := int(id.Add(1))
		now := epoch
		for i := 0; pb.Next(); i++ {
			now = now.Add(time.Microsecond)
			tk, err := s.Admit(now, names[(g*7+i)%len(names)], Default)
			if err != nil {
				b.Fatal(err)
			}
			tk.Done(now, Success)
		}
	})
}

// One control step with 10,000 callers: what the request that ends an
// interval pays. The window is long enough that none is forgotten.
func BenchmarkControlStep(b *testing.B) {
	s := newShedder(b, Config{Window: 10000 * time.Second})
	now := epoch
	for i := range 10000 {
		tk, _ := s.Admit(now, fmt.Sprintf("caller-%d", i), Default)
		tk.Done(now, Success)
	}
	now = now.Add(DefaultInterval)
	s.Tick(now) // publishes the new callers
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(DefaultInterval)
		tk, _ := s.Admit(now, "caller-1", Default)
		tk.Done(now, Success)
	}
}
