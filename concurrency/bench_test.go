package concurrency

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkSlotsTryAcquireRelease(b *testing.B) {
	s := NewSlots(Shared, 100)
	b.ReportAllocs()
	for b.Loop() {
		if s.TryAcquire() {
			s.Release()
		}
	}
}

// One instance's slots shared by every goroutine: the worst case, all CAS
// operations on one cache line.
func BenchmarkSlotsTryAcquireReleaseParallel(b *testing.B) {
	s := NewSlots(Shared, MaxLimit)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if s.TryAcquire() {
				s.Release()
			}
		}
	})
}

// Each goroutine on its own instance, as when the router spreads requests:
// padding keeps neighbouring instances off each other's cache line.
func BenchmarkSlotsTryAcquireReleaseParallelInstances(b *testing.B) {
	insts := make([]*Slots, 64)
	for i := range insts {
		insts[i] = NewSlots(Shared, 100)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s := insts[int(next.Add(1))%len(insts)]
		for pb.Next() {
			if s.TryAcquire() {
				s.Release()
			}
		}
	})
}

func BenchmarkFunctionLimitAcquireRelease(b *testing.B) {
	l := NewFunctionLimit(100)
	b.ReportAllocs()
	for b.Loop() {
		if l.Acquire() == nil {
			l.Release()
		}
	}
}

// Acquire with capacity free and nobody waiting: the fast path.
func BenchmarkQueueAcquireFree(b *testing.B) {
	s := NewSlots(Shared, MaxLimit)
	q, _ := NewQueue(QueueConfig[*Slots]{
		TryAcquire: func() (*Slots, bool) { return s, s.TryAcquire() },
		Release:    func(s *Slots) { s.Release() },
	})
	defer q.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		t, err := q.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		q.Release(t)
	}
}

// A waiter parks, and a releaser hands it the token: one full wait and
// wake-up per iteration (two goroutine switches).
func BenchmarkQueueHandoff(b *testing.B) {
	q, _ := NewQueue(QueueConfig[int]{MaxWait: time.Hour, Release: func(int) {}})
	defer q.Close()
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := q.Acquire(ctx); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		for !q.Handoff(1) {
			runtime.Gosched() // the waiter has not parked again yet
		}
	}
	q.Close()
	<-done
}

func BenchmarkMeterObserve(b *testing.B) {
	m, _ := NewMeter(MeterConfig{})
	now := at(0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(10 * time.Millisecond)
		m.Observe(now, i%50)
	}
}

// One scaling decision as the Dataplane makes it: the meter's averages
// (a scan of 60 buckets) and the policy.
func BenchmarkMeterObservationDecide(b *testing.B) {
	m, _ := NewMeter(MeterConfig{})
	p, _ := NewKPA(KPAConfig{})
	now := at(0)
	for i := range 120 {
		m.Observe(now.Add(time.Duration(i)*time.Second), 30+i%10)
	}
	now = now.Add(120 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		o := m.Observation(now)
		o.Instances, o.InstanceLimit = 5, 10
		p.Decide(now, o)
	}
}
