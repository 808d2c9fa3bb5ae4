package router

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBreakerStateMachine drives one breaker through a script of steps and
// checks its state after each: closed → open → half-open → closed or open,
// the growth of ejections and their cap, and migration.
func TestBreakerStateMachine(t *testing.T) {
	type step struct {
		at     time.Duration // since t0
		op     string        // "fail", "ok", "eject", "expire"
		jitter float64       // for "eject"
		// expectations
		ret     bool // Failure: eject?; Success: closed?; Expire: moved?; Eject: migrate?
		state   BreakerState
		until   time.Duration // for "eject": the ejection's end since t0
		ejected int
	}
	cfg := BreakerConfig{ConsecutiveFailures: 3, BaseEjection: 30 * time.Second, MaxEjection: 100 * time.Second,
		Jitter: 0.5, MigrateAfter: 5, ForgetAfter: time.Hour}
	tests := []struct {
		name  string
		cfg   BreakerConfig
		steps []step
	}{
		{
			name: "failures below the threshold do not eject; a success resets them",
			cfg:  cfg,
			steps: []step{
				{op: "fail", state: Closed},
				{op: "fail", state: Closed},
				{op: "ok", state: Closed},
				{op: "fail", state: Closed},
				{op: "fail", state: Closed},
				{op: "fail", ret: true, state: Closed},
			},
		},
		{
			name: "eject, expire, probe succeeds",
			cfg:  cfg,
			steps: []step{
				{op: "fail"}, {op: "fail"}, {op: "fail", ret: true},
				{at: 1 * time.Second, op: "eject", state: Open, until: 31 * time.Second, ejected: 1},
				{at: 2 * time.Second, op: "fail", state: Open, ejected: 1},    // late failure: ignored
				{at: 3 * time.Second, op: "ok", state: Open, ejected: 1},      // late success: ignored
				{at: 30 * time.Second, op: "expire", state: Open, ejected: 1}, // not yet
				{at: 31 * time.Second, op: "expire", ret: true, state: HalfOpen, ejected: 1},
				{at: 32 * time.Second, op: "ok", ret: true, state: Closed, ejected: 1},
			},
		},
		{
			name: "probe fails: ejected again for twice as long, then capped",
			cfg:  cfg,
			steps: []step{
				{op: "fail"}, {op: "fail"}, {op: "fail", ret: true},
				{op: "eject", state: Open, until: 30 * time.Second, ejected: 1},
				{at: 30 * time.Second, op: "expire", ret: true, state: HalfOpen, ejected: 1},
				{at: 31 * time.Second, op: "fail", ret: true, state: HalfOpen, ejected: 1},
				{at: 31 * time.Second, op: "eject", state: Open, until: 91 * time.Second, ejected: 2},
				{at: 91 * time.Second, op: "expire", ret: true, state: HalfOpen, ejected: 2},
				{at: 91 * time.Second, op: "fail", ret: true, state: HalfOpen, ejected: 2},
				{at: 91 * time.Second, op: "eject", state: Open, until: 181 * time.Second, ejected: 3}, // 90 s
				{at: 181 * time.Second, op: "expire", ret: true, state: HalfOpen, ejected: 3},
				{at: 181 * time.Second, op: "fail", ret: true, state: HalfOpen, ejected: 3},
				{at: 181 * time.Second, op: "eject", state: Open, until: 281 * time.Second, ejected: 4}, // cap 100 s
			},
		},
		{
			name: "jitter lengthens by up to Jitter of the length",
			cfg:  cfg,
			steps: []step{
				{op: "fail"}, {op: "fail"}, {op: "fail", ret: true},
				{op: "eject", jitter: 0.5, state: Open, until: 30*time.Second + 7500*time.Millisecond, ejected: 1},
			},
		},
		{
			name: "the MigrateAfter-th ejection asks for migration",
			cfg:  BreakerConfig{ConsecutiveFailures: 1, MigrateAfter: 2},
			steps: []step{
				{op: "fail", ret: true},
				{op: "eject", state: Open, until: 30 * time.Second, ejected: 1},
				{at: 30 * time.Second, op: "expire", ret: true, state: HalfOpen, ejected: 1},
				{at: 30 * time.Second, op: "fail", ret: true, state: HalfOpen, ejected: 1},
				{at: 30 * time.Second, op: "eject", ret: true, state: Open, until: 90 * time.Second, ejected: 2},
			},
		},
		{
			name: "ejections are forgotten after ForgetAfter closed",
			cfg:  BreakerConfig{ConsecutiveFailures: 1, ForgetAfter: time.Minute, Jitter: -1},
			steps: []step{
				{op: "fail", ret: true},
				{op: "eject", state: Open, until: 30 * time.Second, ejected: 1},
				{at: 30 * time.Second, op: "expire", ret: true, state: HalfOpen, ejected: 1},
				{at: 30 * time.Second, op: "ok", ret: true, state: Closed, ejected: 1},
				{at: 60 * time.Second, op: "fail", ret: true, state: Closed, ejected: 1},
				{at: 60 * time.Second, op: "eject", state: Open, until: 120 * time.Second, ejected: 2}, // 30 s closed: kept
				{at: 120 * time.Second, op: "expire", ret: true, state: HalfOpen, ejected: 2},
				{at: 120 * time.Second, op: "ok", ret: true, state: Closed, ejected: 2},
				{at: 180 * time.Second, op: "fail", ret: true, state: Closed, ejected: 2},
				{at: 180 * time.Second, op: "eject", state: Open, until: 210 * time.Second, ejected: 1}, // 60 s closed: forgotten
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := newBreaker(tt.cfg)
			require.NoError(t, err)
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				var ret bool
				switch s.op {
				case "fail":
					ret = b.Failure(now)
				case "ok":
					ret = b.Success(now)
				case "expire":
					ret = b.Expire(now)
				case "eject":
					var until time.Time
					until, ret = b.Eject(now, s.jitter)
					assert.Equal(t, t0.Add(s.until), until, "step %d: until", i)
					assert.Equal(t, until, b.Until(), "step %d: Until()", i)
				default:
					t.Fatalf("bad op %q", s.op)
				}
				assert.Equal(t, s.ret, ret, "step %d (%s at %v): result", i, s.op, s.at)
				assert.Equal(t, s.state, b.State(), "step %d (%s at %v): state", i, s.op, s.at)
				assert.Equal(t, s.ejected, b.Ejections(), "step %d (%s at %v): ejections", i, s.op, s.at)
			}
		})
	}
}

func TestBreakerEjectWhileOpenChangesNothing(t *testing.T) {
	b, err := newBreaker(BreakerConfig{ConsecutiveFailures: 1})
	require.NoError(t, err)
	require.True(t, b.Failure(t0))
	until, _ := b.Eject(t0, 0)
	again, migrate := b.Eject(t0.Add(time.Second), 0.9)
	assert.Equal(t, until, again)
	assert.False(t, migrate)
	assert.Equal(t, 1, b.Ejections())
	assert.True(t, b.Until().After(t0))
	require.True(t, b.Expire(until))
	assert.True(t, b.Until().IsZero(), "Until is zero unless open")
}

func TestBreakerBackoffNeverOverflows(t *testing.T) {
	tests := []struct {
		base, max time.Duration
		jitter    float64
	}{
		{time.Second, 24 * time.Hour, -1},
		{1 << 62, math.MaxInt64, -1},
		{1 << 62, math.MaxInt64, 1},
		{math.MaxInt64 / 3, math.MaxInt64 - 1, 0.5},
	}
	for _, tt := range tests {
		b, err := newBreaker(BreakerConfig{ConsecutiveFailures: 1, BaseEjection: tt.base, MaxEjection: tt.max, MigrateAfter: -1, Jitter: tt.jitter})
		require.NoError(t, err)
		var last time.Duration
		for i := range 100_000 {
			b.Failure(t0)
			until, _ := b.Eject(t0, 0.99)
			d := until.Sub(t0)
			if d < last || d <= 0 {
				t.Fatalf("base %v, max %v: ejection %d lasts %v after %v", tt.base, tt.max, i+1, d, last)
			}
			last = d
			b.Expire(until)
		}
		if tt.jitter < 0 {
			assert.Equal(t, tt.max, last)
		}
	}
}

func TestBreakerConfigValidation(t *testing.T) {
	bad := []BreakerConfig{
		{ConsecutiveFailures: -1},
		{BaseEjection: -time.Second},
		{BaseEjection: time.Minute, MaxEjection: time.Second},
		{Jitter: 1.5},
		{MaxEjectedShare: 1.5},
		{MaxEjectedShare: -0.1},
	}
	for _, c := range bad {
		_, err := newBreaker(c)
		assert.True(t, errors.Is(err, ErrInvalidConfig), "%+v: %v", c, err)
		_, err = New(Config{Breaker: c}, Hooks{})
		assert.True(t, errors.Is(err, ErrInvalidConfig), "router %+v: %v", c, err)
	}
}

func TestMaxEjected(t *testing.T) {
	tests := []struct {
		share float64
		n     int
		want  int
	}{
		{0.1, 0, 1}, {0.1, 1, 1}, {0.1, 9, 1}, {0.1, 10, 1}, {0.1, 19, 1}, {0.1, 20, 2}, {0.1, 105, 10},
		{0.5, 3, 1}, {0.5, 4, 2}, {1, 3, 3}, {0, 30, 3}, // zero share: the default, 10 %
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, BreakerConfig{MaxEjectedShare: tt.share}.MaxEjected(tt.n), "share %v of %d", tt.share, tt.n)
	}
}

func TestStringers(t *testing.T) {
	assert.Equal(t, "half-open", HalfOpen.String())
	assert.Equal(t, "BreakerState(9)", BreakerState(9).String())
	assert.Equal(t, "ejected", RouteEjected.String())
	assert.Equal(t, "EventKind(0)", EventKind(0).String())
	assert.Equal(t, "instance_reassigned", CauseReassigned.String())
	assert.Equal(t, "Cause(99)", Cause(99).String())
	assert.Equal(t, "connect_failed", ConnectFailed.String())
	assert.Equal(t, "Outcome(42)", Outcome(42).String())
}
