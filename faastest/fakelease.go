package faastest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/faasplane/faas/clock"

	"github.com/faasplane/faas/warmpool"
)

// LeaseStore is a fake warmpool.LeaseStore for tests: a
// warmpool.MemLeaseStore (fencing tokens that grow every time a key changes
// hands, claims, compare-and-set on every operation, leases that lapse by
// the store's clock: pass a [Clock]'s Now and advance it) plus control over
// what a real store would do on its own: [LeaseStore.Expire] ends a lease at
// once as if its holder had stopped renewing, and FailNext makes operations
// fail as an unreachable etcd would. It counts operations. It is safe for
// concurrent use.
type LeaseStore struct {
	// mu makes each operation atomic with the fake's bookkeeping, and
	// Expire's read-then-release atomic against the other operations.
	mu       sync.Mutex
	mem      *warmpool.MemLeaseStore
	keys     map[string]struct{} // keys acquired and maybe still leased, for ExpireHolder
	failNext int
	failErr  error
	ops      int
}

// NewLeaseStore returns an empty store on clock c (the system clock when
// nil); pass a [Clock] to control expiry.
func NewLeaseStore(c clock.Clock) *LeaseStore {
	return &LeaseStore{mem: warmpool.NewMemLeaseStore(c), keys: make(map[string]struct{})}
}

// beginLocked counts an operation and returns the injected failure, if
// any. Callers hold mu.
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
	l, err := s.mem.Acquire(ctx, key, holder, ttl)
	if err == nil {
		s.keys[key] = struct{}{}
	}
	return l, err
}

// Renew implements warmpool.LeaseStore.
func (s *LeaseStore) Renew(ctx context.Context, leases []warmpool.Lease, ttl time.Duration) ([]warmpool.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginLocked(ctx); err != nil {
		return nil, err
	}
	return s.mem.Renew(ctx, leases, ttl)
}

// Release implements warmpool.LeaseStore.
func (s *LeaseStore) Release(ctx context.Context, l warmpool.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginLocked(ctx); err != nil {
		return err
	}
	if err := s.mem.Release(ctx, l); err != nil {
		return err
	}
	delete(s.keys, l.Key)
	return nil
}

// Claim implements warmpool.LeaseStore.
func (s *LeaseStore) Claim(ctx context.Context, l warmpool.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginLocked(ctx); err != nil {
		return err
	}
	return s.mem.Claim(ctx, l)
}

// Expire ends the key's lease now, as if its holder had stopped renewing
// it: the next Acquire by anyone succeeds with a new token, and the old
// holder's Renew, Claim and Release fail. A claim ends too, as it would
// when its holder dies. It reports whether there was a live lease to end.
func (s *LeaseStore) Expire(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expireLocked(key, "")
}

// ExpireHolder ends every live lease of holder, claims included, as if it
// had died, and returns how many it ended.
func (s *LeaseStore) ExpireHolder(holder string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for key := range s.keys {
		if s.expireLocked(key, holder) {
			n++
		}
	}
	return n
}

// expireLocked ends key's live lease (of holder, unless holder is empty)
// by releasing it with its own token, which leaves the store as a lapse
// would. Under mu no operation can come in between.
func (s *LeaseStore) expireLocked(key, holder string) bool {
	l, _, ok := s.mem.Get(key)
	if !ok {
		delete(s.keys, key) // lapsed or released: nothing left to expire
		return false
	}
	if holder != "" && l.Holder != holder {
		return false
	}
	if s.mem.Release(context.Background(), l) != nil {
		return false
	}
	delete(s.keys, key)
	return true
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
	return s.mem.Get(key)
}

// Ops returns the number of operations called with a live context (failed
// ones included).
func (s *LeaseStore) Ops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops
}

var _ warmpool.LeaseStore = (*LeaseStore)(nil)
