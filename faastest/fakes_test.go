package faastest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCodeStoreLatencyFailuresAndCounts(t *testing.T) {
	ctx := context.Background()
	clk := NewClock(Epoch)
	s := NewCodeStore(CodeStoreConfig{Latency: Const(time.Second), Clock: clk})
	ref := s.Add([]byte("package"))

	type result struct {
		data []byte
		err  error
	}
	res := make(chan result)
	open := func() {
		rc, err := s.Open(ctx, ref)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		res <- result{b, err}
	}
	go open()
	require.NoError(t, clk.BlockUntil(ctx, 1))
	clk.Advance(time.Second)
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, "package", string(r.data))

	s.FailNext(1)
	go open()
	require.NoError(t, clk.BlockUntil(ctx, 1))
	clk.Advance(time.Second)
	err := (<-res).err
	assert.ErrorIs(t, err, code.ErrFetch, "a transient failure")
	assert.ErrorIs(t, err, ErrInjected)

	s.SetDown(true)
	go open()
	require.NoError(t, clk.BlockUntil(ctx, 1))
	clk.Advance(time.Second)
	assert.ErrorIs(t, (<-res).err, code.ErrFetch)
	s.SetDown(false)

	missing := code.RefFor("fake:///x", []byte("other"))
	go func() {
		_, err := s.Open(ctx, missing)
		res <- result{err: err}
	}()
	require.NoError(t, clk.BlockUntil(ctx, 1))
	clk.Advance(time.Second)
	assert.ErrorIs(t, (<-res).err, code.ErrNotFound)
	assert.Equal(t, CodeStoreStats{CodeStoreCounts: CodeStoreCounts{Opens: 2, Hits: 1, Misses: 1}, Failures: 2}, s.Stats())
}

// TestCodeStoreBehindTheDiskCache puts the fake origin behind a real
// code.DiskCache: the first open fetches, a transient failure is not
// cached, and hits never reach the origin.
func TestCodeStoreBehindTheDiskCache(t *testing.T) {
	ctx := context.Background()
	origin := NewCodeStore(CodeStoreConfig{FailRate: 0})
	ref := origin.Add([]byte("a function package"))
	cache, err := code.NewDiskCache(code.CacheConfig{Dir: t.TempDir(), MaxBytes: 1 << 20}, origin)
	require.NoError(t, err)
	defer cache.Close()

	origin.FailNext(1)
	_, err = cache.Open(ctx, ref)
	assert.ErrorIs(t, err, code.ErrFetch)
	for range 3 {
		rc, err := cache.Open(ctx, ref)
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		assert.Equal(t, "a function package", string(b))
	}
	assert.EqualValues(t, 1, origin.Stats().Hits, "fetched once, then served from disk")
	assert.EqualValues(t, 2, cache.Stats().Hits)

	flaky := NewCodeStore(CodeStoreConfig{FailRate: 0.5, Seed: 3})
	ref = flaky.Add([]byte("x"))
	fails := 0
	for range 400 {
		if rc, err := flaky.Open(ctx, ref); err != nil {
			fails++
		} else {
			rc.Close()
		}
	}
	assert.InDelta(t, 200, fails, 50)
}

func TestHealthCheckerVerdicts(t *testing.T) {
	h := NewHealthChecker()
	ctx := context.Background()
	a := lifecycle.NewInstance(lifecycle.Info{ID: "a", FunctionID: "f"}, Epoch)
	require.NoError(t, h.Check(ctx, a))
	assert.False(t, h.Flip("a"))
	assert.ErrorIs(t, h.Check(ctx, a), ErrUnhealthy)
	assert.False(t, h.Healthy("a"))
	assert.True(t, h.Flip("a"))
	require.NoError(t, h.Check(ctx, a))
	h.SetReassigned("a")
	assert.ErrorIs(t, h.Check(ctx, a), lifecycle.CodeInstanceReassigned)
	boom := errors.New("boom")
	h.SetError("a", boom)
	assert.ErrorIs(t, h.Check(ctx, a), boom)
	h.SetHealthy("a", true)
	assert.True(t, h.Healthy("a"))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, h.Check(cctx, a), context.Canceled)
	assert.Equal(t, 5, h.Checks("a"), "a cancelled check is not counted")
	assert.Equal(t, 5, h.Checks(""))
}

// TestHealthCheckerDrivesTheRouter runs a real router.HealthMonitor round
// by round on the fake clock with the fake checker.
func TestHealthCheckerDrivesTheRouter(t *testing.T) {
	ctx := context.Background()
	clk := NewClock(Epoch)
	r, err := router.New(router.Config{}, router.Hooks{})
	require.NoError(t, err)
	inst := lifecycle.NewInstance(lifecycle.Info{ID: "a", FunctionID: "f"}, clk.Now(), r)
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		require.NoError(t, inst.Transition(clk.Now(), s, "test"))
	}
	require.NoError(t, r.Add(clk.Now(), inst, concurrency.NewSlots(concurrency.Shared, 4), nil))
	h := NewHealthChecker()
	m, err := router.NewHealthMonitor(r, router.HealthConfig{
		Checker: h, Clock: clk, Interval: time.Second,
		Readiness: router.Probe{Period: time.Second, FailureThreshold: 2, Timeout: time.Second},
	})
	require.NoError(t, err)
	defer m.Close()
	round := func() {
		clk.Advance(time.Second)
		m.RunOnce(ctx, clk.Now())
	}
	round() // first sight
	h.SetHealthy("a", false)
	round()
	assert.Equal(t, 1, r.Stats("f").Routable, "one failure is below the threshold")
	round()
	assert.Equal(t, 0, r.Stats("f").Routable, "two take it out")
	assert.Equal(t, lifecycle.Unhealthy, inst.State())
	h.Flip("a")
	round()
	assert.Equal(t, 1, r.Stats("f").Routable, "one success lets it back")
	assert.Equal(t, 3, h.Checks("a"))

	// Started, the monitor ticks on the fake clock; Close stops it.
	require.NoError(t, m.Start())
	require.NoError(t, clk.BlockUntil(ctx, 1))
	require.NoError(t, m.Close())
	assert.Zero(t, clk.Waiters(), "the monitor's ticker is stopped")
}

func TestLeaseStoreSemantics(t *testing.T) {
	ctx := context.Background()
	clk := NewClock(Epoch)
	s := NewLeaseStore(clk)
	const ttl = 10 * time.Second

	a, err := s.Acquire(ctx, "pod", "m1", ttl)
	require.NoError(t, err)
	assert.Equal(t, clk.Now().Add(ttl), a.Expires)
	_, err = s.Acquire(ctx, "pod", "m2", ttl)
	assert.ErrorIs(t, err, warmpool.ErrLeaseHeld)
	_, err = s.Acquire(ctx, "pod", "m1", ttl)
	assert.ErrorIs(t, err, warmpool.ErrLeaseHeld, "even its holder cannot acquire it again")

	clk.Advance(5 * time.Second)
	renewed, err := s.Renew(ctx, []warmpool.Lease{a}, ttl)
	require.NoError(t, err)
	assert.Equal(t, clk.Now().Add(ttl), renewed[0].Expires)

	clk.Advance(ttl) // lapses
	_, _, ok := s.Get("pod")
	assert.False(t, ok)
	b, err := s.Acquire(ctx, "pod", "m2", ttl)
	require.NoError(t, err)
	assert.Greater(t, b.Token, a.Token, "fencing tokens grow when a key changes hands")
	lost, err := s.Renew(ctx, []warmpool.Lease{a, b}, ttl)
	require.NoError(t, err)
	assert.Zero(t, lost[0].Token, "the old holder's lease is gone")
	assert.Equal(t, b.Token, lost[1].Token)
	assert.ErrorIs(t, s.Claim(ctx, a), warmpool.ErrLeaseLost)
	assert.ErrorIs(t, s.Release(ctx, a), warmpool.ErrLeaseLost)

	require.NoError(t, s.Claim(ctx, b))
	require.NoError(t, s.Claim(ctx, b), "claiming again is safe")
	_, claimed, ok := s.Get("pod")
	assert.True(t, ok && claimed)
	_, err = s.Acquire(ctx, "pod", "m1", ttl)
	assert.ErrorIs(t, err, warmpool.ErrClaimed)
	require.NoError(t, s.Release(ctx, b))
	b, err = s.Acquire(ctx, "pod", "m2", ttl)
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, b))
	assert.True(t, s.Expire("pod"), "a claim ends with its holder")
	_, _, ok = s.Get("pod")
	assert.False(t, ok)

	// Forced expiry and outages.
	c, err := s.Acquire(ctx, "other", "m3", time.Hour)
	require.NoError(t, err)
	assert.True(t, s.Expire("other"))
	assert.False(t, s.Expire("other"))
	assert.ErrorIs(t, s.Claim(ctx, c), warmpool.ErrLeaseLost)
	for _, k := range []string{"x", "y"} {
		_, err := s.Acquire(ctx, k, "m4", time.Hour)
		require.NoError(t, err)
	}
	assert.Equal(t, 2, s.ExpireHolder("m4"))

	s.FailNext(2, nil)
	_, err = s.Acquire(ctx, "z", "m5", ttl)
	assert.ErrorIs(t, err, ErrInjected)
	_, err = s.Renew(ctx, nil, ttl)
	assert.ErrorIs(t, err, ErrInjected)
	_, err = s.Acquire(ctx, "z", "m5", ttl)
	require.NoError(t, err, "the outage is over")
	_, err = s.Acquire(ctx, "", "m5", ttl)
	assert.Error(t, err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, s.Release(cctx, b), context.Canceled)
	assert.Equal(t, 22, s.Ops(), "operations with a live context, failed ones included")
}
