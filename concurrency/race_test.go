package concurrency

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSlotsHammer has many goroutines acquire and release one instance's
// slots (run under -race). A shadow counter, incremented only after a
// successful TryAcquire and decremented before Release, must never exceed
// the limit, and everything must return to zero.
func TestSlotsHammer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  Mode
		limit int
	}{
		{"shared/1", Shared, 1},
		{"shared/4", Shared, 4},
		{"shared/64", Shared, 64},
		{"exclusive", Exclusive, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSlots(tc.mode, tc.limit)
			limit := int64(s.Limit())
			var inside, maxInside, admitted atomic.Int64
			var wg sync.WaitGroup
			workers := 4 * runtime.GOMAXPROCS(0)
			for range workers {
				wg.Go(func() {
					for range 2000 {
						if !s.TryAcquire() {
							runtime.Gosched()
							continue
						}
						n := inside.Add(1)
						for {
							m := maxInside.Load()
							if n <= m || maxInside.CompareAndSwap(m, n) {
								break
							}
						}
						admitted.Add(1)
						runtime.Gosched()
						inside.Add(-1)
						s.Release()
					}
				})
			}
			wg.Wait()
			assert.LessOrEqual(t, maxInside.Load(), limit, "more requests inside than the limit")
			assert.Positive(t, admitted.Load())
			assert.Equal(t, 0, s.InFlight())
			assert.Equal(t, int(limit), s.Free())
		})
	}
}

// TestSlotsHammerWhileLimitChanges changes the limit while goroutines
// hammer the slots: the count never exceeds the largest limit set and
// returns to zero; the final limit is the last one set.
func TestSlotsHammerWhileLimitChanges(t *testing.T) {
	s := NewSlots(Shared, 8)
	var inside, maxInside atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if s.TryAcquire() {
					n := inside.Add(1)
					for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
					}
					runtime.Gosched()
					inside.Add(-1)
					s.Release()
				}
			}
		})
	}
	for i := range 5000 {
		s.SetLimit(1 + i%8)
	}
	s.SetLimit(3)
	close(stop)
	wg.Wait()
	assert.LessOrEqual(t, maxInside.Load(), int64(8))
	assert.Equal(t, 0, s.InFlight())
	assert.Equal(t, 3, s.Limit())
}

// TestFunctionAndInstanceLimitsHammer acquires the function-wide limit and
// then one of several instances' slots, as the Dataplane does; neither
// bound is ever exceeded and both return to zero.
func TestFunctionAndInstanceLimitsHammer(t *testing.T) {
	fn := NewFunctionLimit(5)
	instances := []*Slots{NewSlots(Shared, 3), NewSlots(Shared, 3), NewSlots(Shared, 3)}
	var inside, maxInside, limited atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				if err := fn.Acquire(); err != nil {
					require.ErrorIs(t, err, ErrFunctionLimit)
					limited.Add(1)
					runtime.Gosched()
					continue
				}
				inst := instances[(g+i)%len(instances)]
				if inst.TryAcquire() {
					n := inside.Add(1)
					for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
					}
					runtime.Gosched()
					inside.Add(-1)
					inst.Release()
				}
				fn.Release()
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, maxInside.Load(), int64(5), "function-wide limit exceeded")
	assert.Equal(t, 0, fn.InFlight())
	for _, s := range instances {
		assert.Equal(t, 0, s.InFlight())
	}
	t.Logf("refused by the function limit: %d", limited.Load())
}
