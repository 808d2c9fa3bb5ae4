package coldstart

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
)

// waiters returns how many Ensure callers wait for fn's flights.
func waiters(s *Starter, fn Function) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.flights[flightKey{fn.ID, fn.Generation}] {
		n += f.waiters
	}
	return n
}

func TestEnsureBurstCausesTheColdStartsAskedFor(t *testing.T) {
	for _, want := range []int{1, 3} {
		t.Run(fmt.Sprint("want=", want), func(t *testing.T) {
			pool := &fakePool{}
			agent := &fakeAgent{loadGate: make(chan struct{})}
			s, _ := newStarter(t, pool, agent, nil)
			fn := testFunction("burst")
			const requests = 200
			results := make([]Result, requests)
			errs := make([]error, requests)
			var wg sync.WaitGroup
			for i := range requests {
				wg.Go(func() { results[i], errs[i] = s.Ensure(context.Background(), fn, want) })
			}
			// Every request waits before any cold start may finish.
			require.Eventually(t, func() bool { return waiters(s, fn) == requests }, 10*time.Second, time.Millisecond)
			assert.Equal(t, want, s.InFlight(fn))
			close(agent.loadGate)
			wg.Wait()
			// The callers waited for the oldest cold start only; the others
			// finish on their own.
			require.Eventually(t, func() bool { return s.InFlight(fn) == 0 }, 10*time.Second, time.Millisecond)

			instances := map[*lifecycle.Instance]int{}
			for i := range requests {
				require.NoError(t, errs[i])
				instances[results[i].Instance]++
			}
			assert.EqualValues(t, want, agent.loads.Load(), "one cold start per unit of need")
			takes, _ := pool.stats()
			assert.Equal(t, want, takes)
			assert.LessOrEqual(t, len(instances), want)
		})
	}
}

func TestEnsureDoesNotCollapseAcrossFunctionsOrGenerations(t *testing.T) {
	agent := &fakeAgent{loadGate: make(chan struct{})}
	s, _ := newStarter(t, &fakePool{}, agent, nil)
	v1, v2, other := testFunction("f"), testFunction("f"), testFunction("g")
	v1.Generation, v2.Generation = 1, 2
	var wg sync.WaitGroup
	for _, fn := range []Function{v1, v1, v2, other} {
		wg.Go(func() {
			_, err := s.Ensure(context.Background(), fn, 1)
			assert.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return waiters(s, v1) == 2 && waiters(s, v2) == 1 && waiters(s, other) == 1 },
		10*time.Second, time.Millisecond)
	close(agent.loadGate)
	wg.Wait()
	assert.EqualValues(t, 3, agent.loads.Load())
}

func TestEnsureCallerThatGivesUpDoesNotCancelTheColdStart(t *testing.T) {
	agent := &fakeAgent{loadGate: make(chan struct{})}
	ready := make(chan *lifecycle.Instance, 1)
	obs := lifecycle.ObserverFunc(func(in *lifecycle.Instance, tr lifecycle.Transition) {
		if tr.To == lifecycle.Ready {
			ready <- in
		}
	})
	s, _ := newStarter(t, &fakePool{}, agent, func(_ *Config, h *Hooks) { h.Observers = []lifecycle.Observer{obs} })
	fn := testFunction("f")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Ensure(ctx, fn, 1)
		done <- err
	}()
	require.Eventually(t, func() bool { return agent.loadsInFlight.Load() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	close(agent.loadGate)
	inst := <-ready
	assert.Equal(t, "f", inst.FunctionID, "the instance still becomes Ready for the others")
}

func TestGlobalCapBoundsColdStartsInFlight(t *testing.T) {
	agent := &fakeAgent{loadGate: make(chan struct{})}
	s, _ := newStarter(t, &fakePool{}, agent, func(c *Config, _ *Hooks) { c.MaxConcurrent = 2 })
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			_, err := s.Ensure(context.Background(), testFunction(fmt.Sprint("f", i)), 1)
			assert.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return agent.loadsInFlight.Load() == 2 }, 10*time.Second, time.Millisecond)
	close(agent.loadGate)
	wg.Wait()
	assert.EqualValues(t, 6, agent.loads.Load())
	assert.EqualValues(t, 2, agent.maxLoad.Load(), "never more than MaxConcurrent loads at once")
}

func TestCloseStopsColdStartsAndDeletesTheirPods(t *testing.T) {
	pool := &fakePool{}
	agent := &fakeAgent{loadGate: make(chan struct{})}
	s, err := New(pool, agent, Config{}, Hooks{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := s.Ensure(context.Background(), testFunction("f"), 1)
		done <- err
	}()
	require.Eventually(t, func() bool { return agent.loadsInFlight.Load() == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, s.Close())
	err = <-done
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, StepLoad, se.Step)
	require.ErrorIs(t, err, context.Canceled)
	_, deleted := pool.stats()
	assert.Equal(t, []string{"pod-1"}, deleted)

	require.NoError(t, s.Close(), "Close is idempotent")
	_, err = s.Ensure(context.Background(), testFunction("f"), 1)
	require.ErrorIs(t, err, ErrClosed)
	_, err = s.Start(context.Background(), testFunction("f"))
	require.ErrorIs(t, err, ErrClosed)
}
