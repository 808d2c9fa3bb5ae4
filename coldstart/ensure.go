package coldstart

import (
	"context"
	"slices"
)

// flightKey identifies the cold starts that collapse together.
type flightKey struct {
	id         string
	generation uint64
}

// flight is one cold start run by Ensure, shared by every caller that waits
// for it.
type flight struct {
	done    chan struct{} // closed when res and err are set
	res     Result
	err     error
	waiters int // callers that waited for it (under Starter.mu)
}

// Ensure makes sure that at least n cold starts of fn (same ID and
// generation) are in flight, starting only the missing ones, and waits,
// bounded by ctx, for the oldest of them; all the callers waiting for one
// cold start get the same result (the same instance). A burst of requests
// that each call Ensure(ctx, fn, want) with the scaler's wish thus causes
// want cold starts, not one per request. n < 1 counts as 1.
//
// The cold starts run on the Starter's own context, not on the callers':
// a caller that gives up does not cancel the cold start the others wait
// for, and its instance still becomes Ready (the Observers see it). They
// end with their per-step timeouts or with Close. An invalid fn fails with
// ErrInvalidFunction at once.
func (s *Starter) Ensure(ctx context.Context, fn Function, n int) (Result, error) {
	if err := fn.Validate(); err != nil {
		return Result{}, err
	}
	n = max(n, 1)
	key := flightKey{fn.ID, fn.Generation}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Result{}, ErrClosed
	}
	fs := s.flights[key]
	for len(fs) < n {
		f := &flight{done: make(chan struct{})}
		fs = append(fs, f)
		s.wg.Go(func() { s.fly(key, fn, f) })
	}
	s.flights[key] = fs
	f := fs[0]
	f.waiters++
	s.mu.Unlock()

	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// fly runs one cold start for Ensure and publishes its result.
func (s *Starter) fly(key flightKey, fn Function, f *flight) {
	f.res, f.err = s.run(s.ctx, &fn, s.fromPool(&fn))
	s.mu.Lock()
	fs := s.flights[key]
	if i := slices.Index(fs, f); i >= 0 {
		fs = slices.Delete(fs, i, i+1)
	}
	if len(fs) == 0 {
		delete(s.flights, key)
	} else {
		s.flights[key] = fs
	}
	s.mu.Unlock()
	close(f.done)
}

// InFlight returns the number of cold starts of fn's ID and generation that
// Ensure is running.
func (s *Starter) InFlight(fn Function) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flights[flightKey{fn.ID, fn.Generation}])
}
