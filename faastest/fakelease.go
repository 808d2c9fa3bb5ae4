package faastest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/faasplane/faas/warmpool"
)

// LeaseStore is a fake warmpool.LeaseStore for tests, with the semantics
// of warmpool.MemLeaseStore (fencing tokens that grow every time a key
// changes hands, claims, compare-and-set on every operation) plus control
// over what a real store would do on its own: leases lapse by the store's
// clock (pass a [Clock]'s Now and advance it), [LeaseStore.Expire] ends one
// at once as if its holder had stopped renewing, and FailNext makes
// operations fail as an unreachable etcd would. It is safe for concurrent
// use.
type LeaseStore struct {
	now func() time.Time

	mu       sync.Mutex
	leases   map[string]*fakeLease
	next     uint64
	failNext int
	failErr  error
	ops      int
}

type fakeLease struct {
	holder  string
	token   uint64
	expires time.Time
	claimed bool
}

// NewLeaseStore returns an empty store whose clock is now (time.Now when
// nil); pass a [Clock]'s Now to control expiry.
func NewLeaseStore(now func() time.Time) *LeaseStore {
	if now == nil {
		now = time.Now
	}
	return &LeaseStore{now: now, leases: make(map[string]*fakeLease)}
}

func (l *fakeLease) live(now time.Time) bool { return l.claimed || now.Before(l.expires) }

// begin counts an operation and returns the injected failure, if any.
// Callers hold mu.
func (s *LeaseStore) beginLocked(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.ops++
	if s.failNext > 0 {
		s.failNext--
		return s.failErr
	}
	return nil
}

// Acquire implements warmpool.LeaseStore.
func (s *LeaseStore) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (warmpool.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginLocked(ctx); err != nil {
		return warmpool.Lease{}, err
	}
	if key == "" || holder == "" || ttl <= 0 {
		return warmpool.Lease{}, fmt.Errorf("faastest: acquire needs a key, a holder and a ttl > 0")
	}
	now := s.now()
	cur, ok := s.leases[key]
	switch {
	case ok && cur.claimed:
		return warmpool.Lease{}, fmt.Errorf("faastest: acquire %q: %w", key, warmpool.ErrClaimed)
	case ok && cur.live(now):
		return warmpool.Lease{}, fmt.Errorf("faastest: acquire %q by %q: %w (holder %q)", key, holder, warmpool.ErrLeaseHeld, cur.holder)
	}
	s.next++
	cur = &fakeLease{holder: holder, token: s.next, expires: now.Add(ttl)}
	s.leases[key] = cur
	return warmpool.Lease{Key: key, Holder: holder, Token: cur.token, Expires: cur.expires}, nil
}

// Renew implements warmpool.LeaseStore.
func (s *LeaseStore) Renew(ctx context.Context, leases []warmpool.Lease, ttl time.Duration) ([]warmpool.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginLocked(ctx); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("faastest: renew needs a ttl > 0")
	}
	now := s.now()
	out := make([]warmpool.Lease, len(leases))
	for i, l := range leases {
		cur, ok := s.leases[l.Key]
		if !ok || cur.claimed || cur.token != l.Token || !now.Before(cur.expires) {
			out[i] = warmpool.Lease{Key: l.Key, Holder: l.Holder}
			continue
		}
		cur.expires = now.Add(ttl)
		out[i] = warmpool.Lease{Key: l.Key, Holder: cur.holder, Token: cur.token, Expires: cur.expires}
	}
	return out, nil
}

// Release implements warmpool.LeaseStore.
func (s *LeaseStore) Release(ctx context.Context, l warmpool.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginLocked(ctx); err != nil {
		return err
	}
	cur, ok := s.leases[l.Key]
	if !ok || cur.token != l.Token || !cur.live(s.now()) {
		return fmt.Errorf("faastest: release %q: %w", l.Key, warmpool.ErrLeaseLost)
	}
	delete(s.leases, l.Key)
	return nil
}

// Claim implements warmpool.LeaseStore.
func (s *LeaseStore) Claim(ctx context.Context, l warmpool.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginLocked(ctx); err != nil {
		return err
	}
	cur, ok := s.leases[l.Key]
	if !ok || cur.token != l.Token || !cur.live(s.now()) {
		return fmt.Errorf("faastest: claim %q with token %d: %w", l.Key, l.Token, warmpool.ErrLeaseLost)
	}
	cur.claimed = true
	return nil
}

// Expire ends the key's lease now, as if its holder had stopped renewing
// it: the next Acquire by anyone succeeds with a new token, and the old
// holder's Renew, Claim and Release fail. A claimed key stays claimed. It
// reports whether there was a live, unclaimed lease to end.
func (s *LeaseStore) Expire(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.leases[key]
	if !ok || cur.claimed || !cur.live(s.now()) {
		return false
	}
	delete(s.leases, key)
	return true
}

// ExpireHolder ends every live, unclaimed lease of holder, as if it had
// died, and returns how many it ended.
func (s *LeaseStore) ExpireHolder(holder string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, n := s.now(), 0
	for key, cur := range s.leases {
		if cur.holder == holder && !cur.claimed && cur.live(now) {
			delete(s.leases, key)
			n++
		}
	}
	return n
}

// FailNext makes the next n operations fail with err (an error wrapping
// ErrInjected when err is nil) before they change anything.
func (s *LeaseStore) FailNext(n int, err error) {
	if err == nil {
		err = fmt.Errorf("faastest: lease store unavailable: %w", ErrInjected)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failErr = max(n, 0), err
}

// Get returns the key's current lease and whether it is claimed; ok is
// false when the key has no live lease.
func (s *LeaseStore) Get(key string) (l warmpool.Lease, claimed, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, found := s.leases[key]
	if !found || !cur.live(s.now()) {
		return warmpool.Lease{}, false, false
	}
	return warmpool.Lease{Key: key, Holder: cur.holder, Token: cur.token, Expires: cur.expires}, cur.claimed, true
}

// Ops returns the number of operations called with a live context (failed
// ones included).
func (s *LeaseStore) Ops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops
}

var _ warmpool.LeaseStore = (*LeaseStore)(nil)
