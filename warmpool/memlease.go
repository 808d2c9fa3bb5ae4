package warmpool

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	members   map[string]memMember
	watches   map[*memWatch]struct{}
	nextToken uint64
	lastSweep time.Time
}

type memMember struct {
	m       Member
	expires time.Time
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
	return &MemLeaseStore{now: clock.Or(c).Now, leases: make(map[string]*memLease), members: make(map[string]memMember), watches: make(map[*memWatch]struct{})}
}

func (s *MemLeaseStore) live(l *memLease, now time.Time) bool {
	return now.Before(l.expires)
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
	case ok && cur.claimed && s.live(cur, now):
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
		if !ok || cur.token != l.Token || !now.Before(cur.expires) {
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
	s.expireMembersLocked()
}

// Heartbeat implements [Membership].
func (s *MemLeaseStore) Heartbeat(ctx context.Context, m Member, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.ID == "" || ttl <= 0 || m.Weight < 0 {
		return fmt.Errorf("warmpool: heartbeat needs an ID, a ttl > 0 and a weight >= 0")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireMembersLocked()
	prev, had := s.members[m.ID]
	s.members[m.ID] = memMember{m: m, expires: s.now().Add(ttl)}
	if !had || prev.m != m || !s.now().Before(prev.expires) {
		s.notifyLocked()
	}
	return nil
}

// Leave implements [Membership].
func (s *MemLeaseStore) Leave(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.members[id]; ok {
		delete(s.members, id)
		s.notifyLocked()
	}
	return nil
}

// Members implements [Membership].
func (s *MemLeaseStore) Members(ctx context.Context) ([]Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireMembersLocked()
	return s.liveMembersLocked(), nil
}

// expireMembersLocked drops the members whose heartbeat lapsed and tells
// the watchers.
func (s *MemLeaseStore) expireMembersLocked() {
	now, gone := s.now(), false
	for id, e := range s.members {
		if !now.Before(e.expires) {
			delete(s.members, id)
			gone = true
		}
	}
	if gone {
		s.notifyLocked()
	}
}

func (s *MemLeaseStore) liveMembersLocked() []Member {
	now := s.now()
	out := make([]Member, 0, len(s.members))
	for _, e := range s.members {
		if now.Before(e.expires) {
			out = append(out, e.m)
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Watch implements [MembershipWatcher]. The store has no timer of its own:
// a member whose heartbeat lapsed is reported gone at the next operation on
// the store (as an etcd lease's expiry is reported when the server notices
// it).
func (s *MemLeaseStore) Watch(ctx context.Context) (<-chan []Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan []Member, 1)
	s.mu.Lock()
	w := &memWatch{ch: ch}
	s.watches[w] = struct{}{}
	s.expireMembersLocked()
	w.send(s.liveMembersLocked())
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watches[w]; ok {
			delete(s.watches, w)
			close(ch)
		}
	})
	return ch, nil
}

// memWatch is one Watch of a MemLeaseStore.
type memWatch struct{ ch chan []Member }

// send replaces a set the watcher has not read yet with the latest.
func (w *memWatch) send(m []Member) {
	select {
	case <-w.ch:
	default:
	}
	w.ch <- m
}

// notifyLocked sends the live members to every watcher.
func (s *MemLeaseStore) notifyLocked() {
	if len(s.watches) == 0 {
		return
	}
	live := s.liveMembersLocked()
	for w := range s.watches {
		w.send(live)
	}
}
