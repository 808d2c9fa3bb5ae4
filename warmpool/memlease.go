package warmpool

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/faasplane/faas/clock"
)

// MemLeaseStore is an in-memory [LeaseStore] and [Membership]: the default
// of a single Manager, and the shared store of several Managers in one
// process (tests, simulations). Its clock is the Now function it was given,
// so a simulation drives it with virtual time. It is safe for concurrent
// use; every operation is atomic under one lock.
type MemLeaseStore struct {
	now func() time.Time

	mu        sync.Mutex
	leases    map[string]*memLease
	members   map[string]time.Time
	nextToken uint64
	lastSweep time.Time
}

type memLease struct {
	holder  string
	token   uint64
	expires time.Time
	claimed bool
}

// sweepEvery is how often, by the store's clock, expired leases are dropped
// from memory.
const sweepEvery = time.Minute

// NewMemLeaseStore returns an empty store on clock c (the system clock when
// nil).
func NewMemLeaseStore(c clock.Clock) *MemLeaseStore {
	return &MemLeaseStore{now: clock.Or(c).Now, leases: make(map[string]*memLease), members: make(map[string]time.Time)}
}

func (s *MemLeaseStore) live(l *memLease, now time.Time) bool {
	return l.claimed || now.Before(l.expires)
}

// Acquire implements [LeaseStore].
func (s *MemLeaseStore) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	if key == "" || holder == "" || ttl <= 0 {
		return Lease{}, fmt.Errorf("warmpool: acquire needs a key, a holder and a ttl > 0")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	cur, ok := s.leases[key]
	switch {
	case ok && cur.claimed:
		return Lease{}, fmt.Errorf("warmpool: acquire %q: %w", key, ErrClaimed)
	case ok && s.live(cur, now):
		return Lease{}, fmt.Errorf("warmpool: acquire %q by %q: %w (holder %q)", key, holder, ErrLeaseHeld, cur.holder)
	default:
		s.nextToken++
		cur = &memLease{holder: holder, token: s.nextToken, expires: now.Add(ttl)}
		s.leases[key] = cur
	}
	return Lease{Key: key, Holder: cur.holder, Token: cur.token, Expires: cur.expires}, nil
}

// Renew implements [LeaseStore].
func (s *MemLeaseStore) Renew(ctx context.Context, leases []Lease, ttl time.Duration) ([]Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("warmpool: renew needs a ttl > 0")
	}
	out := make([]Lease, len(leases))
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for i, l := range leases {
		cur, ok := s.leases[l.Key]
		if !ok || cur.claimed || cur.token != l.Token || !now.Before(cur.expires) {
			out[i] = Lease{Key: l.Key, Holder: l.Holder}
			continue
		}
		cur.expires = now.Add(ttl)
		out[i] = Lease{Key: l.Key, Holder: cur.holder, Token: cur.token, Expires: cur.expires}
	}
	s.sweepLocked(now)
	return out, nil
}

// Release implements [LeaseStore].
func (s *MemLeaseStore) Release(ctx context.Context, l Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.leases[l.Key]
	if !ok || cur.token != l.Token || !s.live(cur, s.now()) {
		return fmt.Errorf("warmpool: release %q: %w", l.Key, ErrLeaseLost)
	}
	delete(s.leases, l.Key)
	return nil
}

// Claim implements [LeaseStore].
func (s *MemLeaseStore) Claim(ctx context.Context, l Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.leases[l.Key]
	if !ok || cur.token != l.Token || !s.live(cur, s.now()) {
		return fmt.Errorf("warmpool: claim %q with token %d: %w", l.Key, l.Token, ErrLeaseLost)
	}
	cur.claimed = true
	return nil
}

// Get returns the key's current lease and whether it is claimed; ok is false
// when the key has no live lease. Tests and tools use it; Managers do not.
func (s *MemLeaseStore) Get(key string) (l Lease, claimed, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, found := s.leases[key]
	if !found || !s.live(cur, s.now()) {
		return Lease{}, false, false
	}
	return Lease{Key: key, Holder: cur.holder, Token: cur.token, Expires: cur.expires}, cur.claimed, true
}

func (s *MemLeaseStore) sweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) < sweepEvery {
		return
	}
	s.lastSweep = now
	for k, l := range s.leases {
		if !s.live(l, now) {
			delete(s.leases, k)
		}
	}
	for id, exp := range s.members {
		if !now.Before(exp) {
			delete(s.members, id)
		}
	}
}

// Heartbeat implements [Membership].
func (s *MemLeaseStore) Heartbeat(ctx context.Context, id string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if id == "" || ttl <= 0 {
		return fmt.Errorf("warmpool: heartbeat needs an id and a ttl > 0")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.members[id] = s.now().Add(ttl)
	return nil
}

// Leave implements [Membership].
func (s *MemLeaseStore) Leave(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, id)
	return nil
}

// Members implements [Membership].
func (s *MemLeaseStore) Members(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]string, 0, len(s.members))
	for id, exp := range s.members {
		if now.Before(exp) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}
