package loadshed

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentAdmitDone hammers one Shedder from many goroutines (run
// under -race) on a shared virtual clock, with the detector switched on
// and off, many callers and all priorities. Every admitted request is
// accounted for: in flight returns to zero, globally and per caller.
func TestConcurrentAdmitDone(t *testing.T) {
	// Overloaded during every other 300 ms of virtual time: the detector
	// switches whatever the goroutines' interleaving.
	sig := SignalFunc(func(now time.Time) bool { return now.Sub(epoch)/(300*time.Millisecond)%2 == 0 })
	s := newShedder(t, Config{Capacity: 50, MaxCallers: 20, Signals: []Signal{sig}})
	var clock atomic.Int64 // µs since epoch
	now := func() time.Time { return epoch.Add(time.Duration(clock.Add(7)) * time.Microsecond) }
	var admitted, shed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var held []Ticket
			for i := range 5000 {
				caller := fmt.Sprintf("caller-%d", (g*7+i)%40)
				p := Priority(i%3 - 1)
				tk, err := s.Admit(now(), caller, p)
				if err != nil {
					if !errors.Is(err, ErrShed) {
						t.Errorf("unexpected error %v", err)
					}
					shed.Add(1)
				} else {
					admitted.Add(1)
					if i%2 == 0 {
						tk.Started(now())
					}
					held = append(held, tk)
				}
				if len(held) > 5 || i%3 == 0 {
					for j := range held {
						held[j].Done(now(), Outcome(j%4))
					}
					held = held[:0]
				}
			}
			for j := range held {
				held[j].Done(now(), Success)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 0, s.InFlight())
	s.Tick(now().Add(time.Second))
	st := s.Stats()
	assert.Equal(t, 0, st.InFlight)
	for _, a := range *s.accounts.snap.Load() {
		require.Zero(t, a.inFlight(), "a caller's count did not return to zero")
	}
	require.Zero(t, s.accounts.other.inFlight())
	assert.LessOrEqual(t, st.Callers, 20)
	t.Logf("admitted %d, shed %d, %d transitions", admitted.Load(), shed.Load(), st.Transitions)
	require.Positive(t, shed.Load(), "the detector never shed")
}
