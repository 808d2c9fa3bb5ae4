package warmpool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wpClock is a manual clock shared by the tests of the package.
type wpClock struct {
	mu sync.Mutex
	t  time.Time
}

func newWPClock() *wpClock { return &wpClock{t: t0} }

func (c *wpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Timers run on real time: the tests on a wpClock drive Manual managers,
// which start none.
func (c *wpClock) NewTimer(d time.Duration) clock.Timer   { return clock.System().NewTimer(d) }
func (c *wpClock) NewTicker(d time.Duration) clock.Ticker { return clock.System().NewTicker(d) }
func (c *wpClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return clock.System().AfterFunc(d, f)
}

// funcClock is a clock.Clock whose time is a function's (timers as
// wpClock's).
type funcClock func() time.Time

func (f funcClock) Now() time.Time                       { return f() }
func (funcClock) NewTimer(d time.Duration) clock.Timer   { return clock.System().NewTimer(d) }
func (funcClock) NewTicker(d time.Duration) clock.Ticker { return clock.System().NewTicker(d) }
func (funcClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return clock.System().AfterFunc(d, f)
}

func (c *wpClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemLeaseStoreLifecycle(t *testing.T) {
	ctx := context.Background()
	clock := newWPClock()
	s := NewMemLeaseStore(clock)

	a, err := s.Acquire(ctx, "p1", "m1", 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, Lease{Key: "p1", Holder: "m1", Token: 1, Expires: t0.Add(10 * time.Second)}, a)
	assert.True(t, a.Valid(clock.Now()))

	_, err = s.Acquire(ctx, "p1", "m2", 10*time.Second)
	require.ErrorIs(t, err, ErrLeaseHeld)
	_, err = s.Acquire(ctx, "p1", "m1", 10*time.Second)
	require.ErrorIs(t, err, ErrLeaseHeld, "even the holder cannot acquire a live lease again")

	clock.Advance(5 * time.Second)
	r, err := s.Renew(ctx, []Lease{a, {Key: "nope", Token: 9}}, 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, Lease{Key: "p1", Holder: "m1", Token: 1, Expires: t0.Add(15 * time.Second)}, r[0])
	assert.Zero(t, r[1].Token)
	a = r[0]

	// The lease lapses; another holder gets a greater token, and the old
	// lease can do nothing any more.
	clock.Advance(15 * time.Second)
	assert.False(t, a.Valid(clock.Now()))
	b, err := s.Acquire(ctx, "p1", "m2", 10*time.Second)
	require.NoError(t, err)
	assert.Greater(t, b.Token, a.Token)
	r, err = s.Renew(ctx, []Lease{a}, time.Second)
	require.NoError(t, err)
	assert.Zero(t, r[0].Token)
	require.ErrorIs(t, s.Claim(ctx, a), ErrLeaseLost)
	require.ErrorIs(t, s.Release(ctx, a), ErrLeaseLost)

	// Claim: idempotent, blocks Acquire while it lives, renewed like any
	// lease; Release frees.
	require.NoError(t, s.Claim(ctx, b))
	require.NoError(t, s.Claim(ctx, b))
	clock.Advance(5 * time.Second)
	_, err = s.Acquire(ctx, "p1", "m3", time.Second)
	require.ErrorIs(t, err, ErrClaimed)
	r, err = s.Renew(ctx, []Lease{b}, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, b.Token, r[0].Token, "a claim is renewed")
	b = r[0]
	clock.Advance(9 * time.Second)
	l, claimed, ok := s.Get("p1")
	require.True(t, ok)
	assert.True(t, claimed)
	assert.Equal(t, b.Token, l.Token)
	require.NoError(t, s.Release(ctx, b))
	_, _, ok = s.Get("p1")
	assert.False(t, ok)
	d, err := s.Acquire(ctx, "p1", "m4", time.Second)
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, d))
	clock.Advance(2 * time.Second)
	_, _, ok = s.Get("p1")
	assert.False(t, ok, "a claim that is not renewed lapses with its holder")
	b = d
	c, err := s.Acquire(ctx, "p1", "m3", time.Second)
	require.NoError(t, err)
	assert.Greater(t, c.Token, b.Token)
}

func TestMemLeaseStoreRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	s := NewMemLeaseStore(nil)
	for _, tc := range []struct{ key, holder string }{{"", "m"}, {"k", ""}} {
		_, err := s.Acquire(ctx, tc.key, tc.holder, time.Second)
		require.Error(t, err)
	}
	_, err := s.Acquire(ctx, "k", "m", 0)
	require.Error(t, err)
	_, err = s.Renew(ctx, nil, 0)
	require.Error(t, err)
	require.Error(t, s.Heartbeat(ctx, Member{}, time.Second))
	require.Error(t, s.Heartbeat(ctx, Member{ID: "m", Weight: -1}, time.Second))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Acquire(cancelled, "k", "m", time.Second)
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Members(cancelled)
	require.ErrorIs(t, err, context.Canceled)
}

func TestMemLeaseStoreMembership(t *testing.T) {
	ctx := context.Background()
	clock := newWPClock()
	s := NewMemLeaseStore(clock)
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := s.Watch(watchCtx)
	require.NoError(t, err)
	require.Empty(t, <-w, "the current set first")
	a, b := Member{ID: "a", Addr: "10.0.0.1:80", Weight: 2}, Member{ID: "b"}
	require.NoError(t, s.Heartbeat(ctx, b, 10*time.Second))
	require.Equal(t, []Member{b}, <-w)
	require.NoError(t, s.Heartbeat(ctx, a, 20*time.Second))
	members, err := s.Members(ctx)
	require.NoError(t, err)
	assert.Equal(t, []Member{a, b}, members, "sorted by ID, with their metadata")
	require.Equal(t, []Member{a, b}, <-w)
	require.NoError(t, s.Heartbeat(ctx, b, 10*time.Second))
	select {
	case m := <-w:
		t.Fatalf("a heartbeat that changes nothing is not a change: %v", m)
	default:
	}
	clock.Advance(10 * time.Second)
	members, _ = s.Members(ctx)
	assert.Equal(t, []Member{a}, members, "a heartbeat lapses after its ttl")
	require.Equal(t, []Member{a}, <-w, "and the watchers hear of it")
	require.NoError(t, s.Leave(ctx, "a"))
	members, _ = s.Members(ctx)
	assert.Empty(t, members)
	require.Empty(t, <-w)
	stop()
	_, open := <-w
	require.False(t, open, "the channel closes with the context")
}

func TestMemLeaseStoreSweepsExpiredLeases(t *testing.T) {
	ctx := context.Background()
	clock := newWPClock()
	s := NewMemLeaseStore(clock)
	for i := range 100 {
		_, err := s.Acquire(ctx, fmt.Sprint(i), "m", time.Second)
		require.NoError(t, err)
	}
	l, err := s.Acquire(ctx, "claimed", "m", time.Second)
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, l))
	clock.Advance(2 * time.Minute)
	_, err = s.Renew(ctx, nil, time.Second)
	require.NoError(t, err)
	s.mu.Lock()
	n := len(s.leases)
	s.mu.Unlock()
	assert.Zero(t, n, "expired leases are swept, claims too: a claim lapses with its holder")
}

// TestMemLeaseStoreMutualExclusion is a property test: holders race to
// acquire, renew, claim and release random keys on a clock that moves; at
// every instant at most one holder has a live lease on a key, tokens only
// grow, and a key is never acquired while its claim lives.
func TestMemLeaseStoreMutualExclusion(t *testing.T) {
	ctx := context.Background()
	clock := newWPClock()
	s := NewMemLeaseStore(clock)
	rng := rand.New(rand.NewPCG(7, 7))
	const keys, holders = 8, 4
	held := map[string]Lease{} // by key: the lease some holder believes it has
	lastToken := map[string]uint64{}
	claimed := map[string]bool{}
	for step := range 20000 {
		key := fmt.Sprint(rng.IntN(keys))
		holder := fmt.Sprint("h", rng.IntN(holders))
		switch rng.IntN(6) {
		case 0:
			clock.Advance(time.Duration(rng.IntN(3000)) * time.Millisecond)
		case 1:
			l, err := s.Acquire(ctx, key, holder, 2*time.Second)
			if err == nil {
				if old, ok := held[key]; ok {
					require.False(t, claimed[key] && old.Valid(clock.Now()), "step %d: key acquired under a live claim", step)
					require.False(t, old.Valid(clock.Now()) && old.Holder != holder,
						"step %d: %s acquired %s while %s's lease is live", step, holder, key, old.Holder)
				}
				require.Greater(t, l.Token, lastToken[key], "step %d: token did not grow", step)
				lastToken[key] = l.Token
				held[key] = l
				delete(claimed, key)
			}
		case 2:
			if l, ok := held[key]; ok {
				r, err := s.Renew(ctx, []Lease{l}, 2*time.Second)
				require.NoError(t, err)
				if r[0].Token != 0 {
					require.True(t, l.Valid(clock.Now()), "step %d: an expired lease was renewed", step)
					held[key] = r[0]
				}
			}
		case 3:
			if l, ok := held[key]; ok && s.Claim(ctx, l) == nil {
				require.True(t, l.Valid(clock.Now()), "step %d: claim with an expired lease", step)
				claimed[key] = true
			}
		case 4, 5:
			if l, ok := held[key]; ok && s.Release(ctx, l) == nil {
				delete(held, key)
				delete(claimed, key)
			}
		}
	}
}
