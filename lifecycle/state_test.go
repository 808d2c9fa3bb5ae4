package lifecycle

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var allStates = []State{Pending, Loading, Loaded, Ready, Unhealthy, Draining, Terminated, Failed}

// legal is the transition table written out from the prose,
// independently of the bitmask in state.go.
var legal = map[[2]State]bool{
	{Pending, Loading}: true, {Loading, Loaded}: true, {Loaded, Ready}: true,
	{Ready, Unhealthy}: true, {Unhealthy, Ready}: true,
	{Pending, Draining}: true, {Loading, Draining}: true, {Loaded, Draining}: true,
	{Ready, Draining}: true, {Unhealthy, Draining}: true,
	{Draining, Terminated}: true,
	{Loading, Failed}:      true, {Loaded, Failed}: true, {Pending, Failed}: true,
}

func TestCanTransitionExhaustive(t *testing.T) {
	for _, from := range allStates {
		for _, to := range allStates {
			require.Equal(t, legal[[2]State{from, to}], CanTransition(from, to), "%s → %s", from, to)
		}
		require.False(t, CanTransition(from, State(99)), "%s → out of range", from)
		require.False(t, CanTransition(State(99), from), "out of range → %s", from)
	}
}

// TestTransitionEveryPair drives a fresh instance to each state along a
// legal path, then tries every target: legal ones succeed and are recorded,
// illegal ones return a *TransitionError and change neither the state nor the
// history.
func TestTransitionEveryPair(t *testing.T) {
	pathTo := map[State][]State{
		Pending:    {},
		Loading:    {Loading},
		Loaded:     {Loading, Loaded},
		Ready:      {Loading, Loaded, Ready},
		Unhealthy:  {Loading, Loaded, Ready, Unhealthy},
		Draining:   {Draining},
		Terminated: {Draining, Terminated},
		Failed:     {Failed},
	}
	for _, from := range allStates {
		for _, to := range allStates {
			t.Run(fmt.Sprintf("%s→%s", from, to), func(t *testing.T) {
				in := NewInstance(Info{ID: "i1"}, t0)
				for i, s := range pathTo[from] {
					require.NoError(t, in.Transition(t0.Add(time.Duration(i+1)*time.Second), s, "setup"))
				}
				require.Equal(t, from, in.State())
				before := in.History()
				at := t0.Add(time.Hour)
				err := in.Transition(at, to, "test")
				if legal[[2]State{from, to}] {
					require.NoError(t, err)
					require.Equal(t, to, in.State())
					h := in.History()
					require.Len(t, h, len(before)+1)
					require.Equal(t, Transition{From: from, To: to, At: at, Reason: "test"}, h[len(h)-1])
					require.Equal(t, at, in.Since())
					return
				}
				require.ErrorIs(t, err, ErrIllegalTransition)
				var te *TransitionError
				require.ErrorAs(t, err, &te)
				require.Equal(t, TransitionError{InstanceID: "i1", From: from, To: to}, *te)
				require.Equal(t, from, in.State(), "state changed by an illegal transition")
				require.Equal(t, before, in.History(), "history changed by an illegal transition")
			})
		}
	}
}

func TestTransitionFromStale(t *testing.T) {
	in := NewInstance(Info{ID: "i"}, t0)
	require.NoError(t, in.Transition(t0, Loading, ""))
	err := in.TransitionFrom(t0, Pending, Loading, "stale decision")
	require.ErrorIs(t, err, ErrIllegalTransition)
	var te *TransitionError
	require.ErrorAs(t, err, &te)
	require.Equal(t, Loading, te.From)
	require.Equal(t, Loading, in.State())
	require.NoError(t, in.TransitionFrom(t0, Loading, Loaded, "fresh"))
	require.Equal(t, Loaded, in.State())
}

func TestNewInstanceRecordsCreation(t *testing.T) {
	in := NewInstance(Info{ID: "i", FunctionID: "f"}, t0)
	require.Equal(t, Pending, in.State())
	require.Equal(t, []Transition{{From: Pending, To: Pending, At: t0, Reason: "created"}}, in.History())
	require.Equal(t, t0, in.Since())
	require.Equal(t, "f", in.FunctionID)
}

func TestObserversSeeTransitionsInOrder(t *testing.T) {
	var got []string
	obs := func(name string) Observer {
		return ObserverFunc(func(inst *Instance, tr Transition) {
			// Reading the instance from an observer must not deadlock,
			// and the state has already changed.
			require.Equal(t, tr.To, inst.State())
			h := inst.History()
			require.Equal(t, tr, h[len(h)-1])
			got = append(got, fmt.Sprintf("%s:%s→%s:%s", name, tr.From, tr.To, tr.Reason))
		})
	}
	in := NewInstance(Info{ID: "i"}, t0, obs("a"), obs("b"))
	require.NoError(t, in.Transition(t0, Loading, "load"))
	require.Error(t, in.Transition(t0, Ready, "skip")) // illegal: not observed
	require.NoError(t, in.Transition(t0, Loaded, "listening"))
	require.Equal(t, []string{
		"a:Pending→Loading:load", "b:Pending→Loading:load",
		"a:Loading→Loaded:listening", "b:Loading→Loaded:listening",
	}, got)
}

func TestNewInstanceClonesObservers(t *testing.T) {
	calls := 0
	obs := []Observer{ObserverFunc(func(*Instance, Transition) { calls++ })}
	in := NewInstance(Info{}, t0, obs...)
	obs[0] = ObserverFunc(func(*Instance, Transition) { t.Fatal("caller's slice was aliased") })
	require.NoError(t, in.Transition(t0, Loading, ""))
	require.Equal(t, 1, calls)
}

// TestRacingTransitionsExactlyOneWins races two transitions that are each
// legal from the starting state but exclude each other; run with -race.
func TestRacingTransitionsExactlyOneWins(t *testing.T) {
	cases := []struct {
		name string
		a, b func(in *Instance) error
	}{
		{"same target", func(in *Instance) error { return in.Transition(t0, Unhealthy, "a") },
			func(in *Instance) error { return in.Transition(t0, Unhealthy, "b") }},
		{"both from Ready", func(in *Instance) error { return in.TransitionFrom(t0, Ready, Unhealthy, "health") },
			func(in *Instance) error { return in.TransitionFrom(t0, Ready, Draining, "scale down") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 200 {
				in := NewInstance(Info{ID: "i"}, t0)
				for _, s := range []State{Loading, Loaded, Ready} {
					require.NoError(t, in.Transition(t0, s, ""))
				}
				var notified int
				var mu sync.Mutex
				in.observers = append(in.observers, ObserverFunc(func(*Instance, Transition) {
					mu.Lock()
					notified++
					mu.Unlock()
				}))
				start := make(chan struct{})
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for i, f := range []func(*Instance) error{c.a, c.b} {
					wg.Go(func() {
						<-start
						errs[i] = f(in)
					})
				}
				close(start)
				wg.Wait()
				won := 0
				for _, err := range errs {
					if err == nil {
						won++
					} else {
						require.ErrorIs(t, err, ErrIllegalTransition)
					}
				}
				require.Equal(t, 1, won, "errors: %v", errs)
				require.Equal(t, 1, notified)
				require.Len(t, in.History(), 5)
			}
		})
	}
}

func TestHistoryIsBounded(t *testing.T) {
	in := NewInstance(Info{ID: "flappy"}, t0)
	for _, s := range []State{Loading, Loaded, Ready} {
		require.NoError(t, in.Transition(t0, s, ""))
	}
	const flaps = 1000
	for i := range flaps {
		to := Unhealthy
		if i%2 == 1 {
			to = Ready
		}
		require.NoError(t, in.Transition(t0.Add(time.Duration(i)*time.Second), to, fmt.Sprint(i)))
	}
	h := in.History()
	require.Len(t, h, maxHistory)
	require.Equal(t, "created", h[0].Reason, "creation record kept")
	// The newest maxHistory-1 transitions follow, oldest first.
	for j, tr := range h[1:] {
		require.Equal(t, fmt.Sprint(flaps-(maxHistory-1)+j), tr.Reason)
	}
	require.Equal(t, t0.Add((flaps-1)*time.Second), in.Since())
}

func TestHistoryReturnsACopy(t *testing.T) {
	in := NewInstance(Info{}, t0)
	h := in.History()
	h[0].Reason = "mutated"
	require.Equal(t, "created", in.History()[0].Reason)
}

func TestStateNames(t *testing.T) {
	want := []string{"Pending", "Loading", "Loaded", "Ready", "Unhealthy", "Draining", "Terminated", "Failed"}
	for i, s := range allStates {
		require.Equal(t, want[i], s.String())
	}
	require.Equal(t, "State(42)", State(42).String())
	for _, s := range allStates {
		require.Equal(t, s <= Unhealthy, s.Live(), s.String())
		require.Equal(t, s == Terminated || s == Failed, s.Final(), s.String())
		if s.Final() {
			for _, to := range allStates {
				require.False(t, CanTransition(s, to))
			}
		}
	}
}

func TestTransitionErrorMessage(t *testing.T) {
	err := error(&TransitionError{InstanceID: "i9", From: Ready, To: Loading})
	require.Equal(t, "lifecycle: instance i9: illegal transition Ready → Loading", err.Error())
	require.True(t, errors.Is(err, ErrIllegalTransition))
}
