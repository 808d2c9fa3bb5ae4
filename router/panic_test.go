package router

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// warnLog keeps the warn records of a logger as "message key=value" with
// the record's first attribute (the function or node).
type warnLog struct {
	mu   sync.Mutex
	recs []string
}

func (l *warnLog) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }
func (l *warnLog) WithAttrs([]slog.Attr) slog.Handler             { return l }
func (l *warnLog) WithGroup(string) slog.Handler                  { return l }
func (l *warnLog) Handle(_ context.Context, r slog.Record) error {
	s := r.Message
	r.Attrs(func(a slog.Attr) bool {
		s += " " + a.String()
		return false
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, s)
	return nil
}

func (l *warnLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

// about returns the records about group, e.g. "function=f".
func (l *warnLog) about(group string) []string {
	var out []string
	for _, s := range l.all() {
		if strings.HasSuffix(s, " "+group) {
			out = append(out, s)
		}
	}
	return out
}

const (
	enterPanic = "health: pull checks failing together; suspecting the checker's network, not acting on them"
	leavePanic = "health: panic over; acting on pull checks again"
)

// panicRig is a router and a monitor driven round by round on virtual time:
// rounds every 500 ms from t0, when the monitor first sees the instances,
// so that readiness checks fall at 2, 4, 6 s… and liveness checks at 45,
// 90, 135 s.
type panicRig struct {
	*fixture
	chk  *scriptedChecker
	h    *HealthMonitor
	logs *warnLog
	at   time.Duration // the time of the last round, since t0
}

func newPanicRig(t *testing.T, cfg HealthConfig) *panicRig {
	t.Helper()
	rig := &panicRig{fixture: newFixture(t, Config{}), chk: newScriptedChecker(), logs: &warnLog{}}
	cfg.Checker, cfg.Logger = rig.chk, slog.New(rig.logs)
	h, err := NewHealthMonitor(rig.r, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	rig.h = h
	return rig
}

// addOn adds a Ready instance of fnID on node.
func (rig *panicRig) addOn(fnID, id, node string) *lifecycle.Instance {
	rig.t.Helper()
	inst := lifecycle.NewInstance(lifecycle.Info{ID: id, FunctionID: fnID, Node: node, Addr: "127.0.0.1:1"}, t0, rig.r)
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		require.NoError(rig.t, inst.Transition(t0, s, "test"))
	}
	require.NoError(rig.t, rig.r.Add(t0, inst, concurrency.NewSlots(concurrency.Shared, 4), nil))
	return inst
}

// spread adds n instances of fnID named prefix00… on nodes n0…n3 in turn.
func (rig *panicRig) spread(fnID, prefix string, n int) []*lifecycle.Instance {
	var out []*lifecycle.Instance
	for i := range n {
		out = append(out, rig.addOn(fnID, fmt.Sprintf("%s%02d", prefix, i), fmt.Sprintf("n%d", i%4)))
	}
	return out
}

func (rig *panicRig) fail(err error, insts ...*lifecycle.Instance) {
	for _, inst := range insts {
		rig.chk.set(inst.ID, err)
	}
}

// start runs the first round, at t0.
func (rig *panicRig) start() {
	rig.at = 0
	rig.h.RunOnce(context.Background(), t0)
}

// until runs the rounds up to and including until (since t0).
func (rig *panicRig) until(until time.Duration) {
	for rig.at+500*time.Millisecond <= until {
		rig.at += 500 * time.Millisecond
		rig.h.RunOnce(context.Background(), t0.Add(rig.at))
	}
}

// replacements drains the replacement requests made so far.
func (rig *panicRig) replacements() int {
	n := 0
	for {
		select {
		case <-rig.replaced:
			n++
		default:
			return n
		}
	}
}

func (rig *panicRig) states(insts []*lifecycle.Instance) map[lifecycle.State]int {
	out := map[lifecycle.State]int{}
	for _, inst := range insts {
		out[inst.State()]++
	}
	return out
}

// TestPanicThresholdOfAFunction fails k of a function's n instances
// together and checks what the monitor does at 10 s (readiness has
// judged) and at 300 s (six liveness periods).
func TestPanicThresholdOfAFunction(t *testing.T) {
	tests := []struct {
		name      string
		threshold float64
		n, k      int
		panics    bool
		failures  int // Readiness.FailureThreshold; 0 for the default, 3
	}{
		{"all 20 of 20", 0, 20, 20, true, 0},
		{"1 of 20", 0, 20, 1, false, 0},
		{"9 of 20, below", 0, 20, 9, false, 0},
		{"10 of 20, at the threshold", 0, 20, 10, false, 0},
		{"11 of 20, above", 0, 20, 11, true, 0},
		{"3 of 10 at 30 %", 0.3, 10, 3, false, 0},
		{"4 of 10 at 30 %", 0.3, 10, 4, true, 0},
		{"2 of 2", 0, 2, 2, true, 0},
		{"1 of 1, below PanicMinInstances", 0, 1, 1, false, 0},
		{"20 of 20, disabled", -1, 20, 20, false, 0},
		// Out at the first failure: the round's verdicts are judged
		// together before any is acted on.
		{"all 20 of 20, out at one failure", 0, 20, 20, true, 1},
		{"10 of 20, out at one failure", 0, 20, 10, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newPanicRig(t, HealthConfig{PanicThreshold: tt.threshold, Readiness: Probe{FailureThreshold: tt.failures}})
			insts := rig.spread("f", "i", tt.n)
			rig.start()
			rig.fail(errDown, insts[:tt.k]...)

			rig.until(10 * time.Second)
			st := rig.r.Stats("f")
			assert.Equal(t, tt.panics, st.Panicking)
			if tt.panics {
				assert.Zero(t, st.Unhealthy, "the checker is suspected, not the instances")
				assert.Equal(t, tt.n, st.Routable)
				assert.Equal(t, []string{"added/caller"}, causes(rig.rec.all()), "never taken out, not even for a round")
				assert.Equal(t, []string{enterPanic + " function=f"}, rig.logs.about("function=f"))
			} else {
				assert.Equal(t, tt.k, st.Unhealthy, "taken out as usual")
				assert.Equal(t, tt.n-tt.k, st.Routable)
				assert.Empty(t, rig.logs.all())
			}

			logged := len(rig.logs.all()) // the function, and the nodes when all fail
			rig.until(300 * time.Second)
			if tt.panics {
				assert.Zero(t, rig.replacements(), "liveness gives up on none")
				assert.Equal(t, map[lifecycle.State]int{lifecycle.Ready: tt.n}, rig.states(insts))
				assert.Len(t, rig.logs.all(), logged, "logged once, not per check")
				for _, e := range rig.rec.all() {
					assert.NotEqual(t, RouteRemoved, e.Kind, "%s", e.Instance.ID)
				}
			} else {
				assert.Equal(t, tt.k, rig.replacements(), "liveness replaces the failing ones")
				assert.Equal(t, tt.k, rig.states(insts)[lifecycle.Draining])
			}
		})
	}
}

// TestPanicOfANode cuts the checker off from the nodes in fail; the
// function has 20 instances: 5 on node-a, 8 on node-b, 6 on node-c, 1 on
// node-x, and g has one instance on node-a.
func TestPanicOfANode(t *testing.T) {
	tests := []struct {
		name      string
		fail      func(id, node string) bool
		nodes     []string // in panic
		removed   int      // instances of f taken out and replaced
		gRetained bool
	}{
		{"every instance of node-a", func(_, node string) bool { return node == "node-a" }, []string{"node-a"}, 0, true},
		{"node-x with a single instance", func(_, node string) bool { return node == "node-x" }, nil, 1, true},
		{"5 of node-a's 6", func(id, node string) bool { return node == "node-a" && id != "a4" }, nil, 4, false},
		{"node-a and node-x", func(_, node string) bool { return node == "node-a" || node == "node-x" }, []string{"node-a"}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newPanicRig(t, HealthConfig{})
			var all []*lifecycle.Instance
			for _, node := range []struct {
				name string
				n    int
			}{{"node-a", 5}, {"node-b", 8}, {"node-c", 6}, {"node-x", 1}} {
				for i := range node.n {
					all = append(all, rig.addOn("f", fmt.Sprintf("%c%d", node.name[5], i), node.name))
				}
			}
			g := rig.addOn("g", "g0", "node-a")
			rig.start()
			for _, inst := range append(all, g) {
				if tt.fail(inst.ID, inst.Node) {
					rig.fail(errDown, inst)
				}
			}

			rig.until(10 * time.Second)
			assert.Equal(t, tt.nodes, rig.h.PanickingNodes())
			assert.False(t, rig.r.Stats("f").Panicking, "the function's share is below the threshold")
			assert.Equal(t, tt.removed, rig.r.Stats("f").Unhealthy)
			if tt.gRetained {
				assert.Equal(t, lifecycle.Ready, g.State(), "a node's panic covers every function on it")
			} else {
				assert.Equal(t, lifecycle.Unhealthy, g.State(), "g's single instance is no panic")
			}
			var want []string
			for _, node := range tt.nodes {
				want = append(want, enterPanic+" node="+node)
			}
			assert.Equal(t, want, rig.logs.all())

			rig.until(140 * time.Second)
			gaveUp := tt.removed
			if !tt.gRetained {
				gaveUp++
			}
			assert.Equal(t, gaveUp, rig.replacements())
			assert.Equal(t, tt.removed, rig.states(all)[lifecycle.Draining])
			assert.Equal(t, want, rig.logs.all(), "logged once, not per check")
		})
	}
}

// TestPassiveSignalsActInPanic: in panic the monitor ignores its own
// failed checks, but breakers, instance_reassigned answers and push
// reports act as usual.
func TestPassiveSignalsActInPanic(t *testing.T) {
	rig := newPanicRig(t, HealthConfig{})
	insts := rig.spread("f", "i", 20)
	rig.start()
	rig.fail(errDown, insts...)
	rig.until(10 * time.Second)
	require.True(t, rig.r.Stats("f").Panicking)
	rig.rec.reset()
	now := t0.Add(rig.at)

	t.Run("a breaker still ejects", func(t *testing.T) {
		rig.fixture.fail(insts[0], 5, ConnectFailed, now)
		assert.Equal(t, Open, rig.info("f", "i00").Breaker)
		assert.False(t, rig.info("f", "i00").Routable)
		assert.Equal(t, []string{"ejected/breaker@i00"}, rig.rec.kinds())
	})
	t.Run("a reassigned answer still removes", func(t *testing.T) {
		rig.rec.reset()
		rig.fail(lifecycle.CodeInstanceReassigned, insts[1])
		rig.until(12 * time.Second)
		assert.Equal(t, lifecycle.Draining, insts[1].State())
		assert.Equal(t, []string{"removed/instance_reassigned@i01"}, rig.rec.kinds())
		assert.Zero(t, rig.replacements())
		assert.True(t, rig.r.Stats("f").Panicking, "19 of 19 still fail")
	})
	t.Run("a push report still takes out", func(t *testing.T) {
		rig.rec.reset()
		require.NoError(t, rig.r.ReportHealth(t0.Add(rig.at), HealthReport{InstanceID: "i02", Healthy: false, Reason: "oom"}))
		assert.Equal(t, lifecycle.Unhealthy, insts[2].State())
		rig.until(20 * time.Second)
		assert.Equal(t, lifecycle.Unhealthy, insts[2].State(), "the panic lets back only what pull checks took out")
		assert.Equal(t, []string{"ejected/health_push@i02"}, rig.rec.kinds())
	})
}

// TestPanicLetsBackWhatPullChecksTookOut: an instance taken out alone is
// readmitted when the rest of its function fails with it, and taken out
// again, on fresh failures, when the panic is over and it still fails.
func TestPanicLetsBackWhatPullChecksTookOut(t *testing.T) {
	rig := newPanicRig(t, HealthConfig{})
	insts := rig.spread("f", "i", 20)
	rig.start()
	rig.fail(errDown, insts[0])
	rig.until(6 * time.Second)
	assert.Equal(t, lifecycle.Unhealthy, insts[0].State(), "alone: out at the third failure")

	rig.fail(errDown, insts[1:]...)
	rig.until(8 * time.Second)
	assert.True(t, rig.r.Stats("f").Panicking)
	assert.Equal(t, lifecycle.Ready, insts[0].State())
	assert.Equal(t, 20, rig.r.Stats("f").Routable)
	ev := rig.rec.all()
	last := ev[len(ev)-1]
	assert.Equal(t, "readmitted/health_panic@i00", fmt.Sprintf("%s/%s@%s", last.Kind, last.Cause, last.Instance.ID))
	assert.Equal(t, "pull checks suspended: 20 of 20 instances of the function failing together", last.Reason)

	// The checker recovers, except for i00, which is really broken.
	rig.until(60 * time.Second)
	rig.rec.reset()
	rig.fail(nil, insts[1:]...)
	rig.until(62 * time.Second)
	assert.False(t, rig.r.Stats("f").Panicking)
	assert.Equal(t, []string{enterPanic + " function=f", leavePanic + " function=f"}, rig.logs.about("function=f"))
	assert.Equal(t, lifecycle.Ready, insts[0].State(), "failures during the panic do not count")
	rig.until(64 * time.Second)
	assert.Equal(t, lifecycle.Ready, insts[0].State(), "two fresh failures, at 62 and 64 s")
	rig.until(66 * time.Second)
	assert.Equal(t, lifecycle.Unhealthy, insts[0].State(), "the third fresh failure takes it out")
	assert.Equal(t, []string{"ejected/health_pull@i00"}, rig.rec.kinds())

	// Liveness, too, counts from the end of the panic: 90 s and 135 s
	// were after it, 180 s is the third.
	rig.until(179 * time.Second)
	assert.Zero(t, rig.replacements())
	rig.until(180 * time.Second)
	assert.Equal(t, 1, rig.replacements())
	assert.Equal(t, lifecycle.Draining, insts[0].State())
	assert.Len(t, rig.logs.about("function=f"), 2)
}

// TestFailureStreakRestartsAfterPanic: an instance two failures into its
// streak when the panic began needs three fresh ones once it is over.
func TestFailureStreakRestartsAfterPanic(t *testing.T) {
	rig := newPanicRig(t, HealthConfig{})
	insts := rig.spread("f", "i", 20)
	rig.start()
	rig.fail(errDown, insts[0])
	rig.until(4 * time.Second) // i00 failed at 2 and 4 s
	rig.fail(errDown, insts[1:]...)
	rig.until(6 * time.Second)
	require.True(t, rig.r.Stats("f").Panicking)
	assert.Equal(t, lifecycle.Ready, insts[0].State(), "its third failure fell in the panic")

	rig.until(20 * time.Second)
	rig.fail(nil, insts[1:]...)
	rig.until(24 * time.Second)
	assert.False(t, rig.r.Stats("f").Panicking)
	assert.Equal(t, lifecycle.Ready, insts[0].State(), "fresh failures at 22 and 24 s")
	rig.until(26 * time.Second)
	assert.Equal(t, lifecycle.Unhealthy, insts[0].State())
}

// TestLeavingPanicWhenAllRecover: once the checks pass, the function is
// out of panic and a later single failure is handled as usual.
func TestLeavingPanicWhenAllRecover(t *testing.T) {
	rig := newPanicRig(t, HealthConfig{})
	insts := rig.spread("f", "i", 20)
	rig.start()
	rig.fail(errDown, insts...)
	rig.until(30 * time.Second)
	require.True(t, rig.r.Stats("f").Panicking)
	rig.fail(nil, insts...)
	rig.until(32 * time.Second)
	assert.False(t, rig.r.Stats("f").Panicking)
	assert.Equal(t, []string{enterPanic + " function=f", leavePanic + " function=f"}, rig.logs.about("function=f"))

	rig.fail(errDown, insts[7])
	rig.until(38 * time.Second)
	assert.Equal(t, lifecycle.Unhealthy, insts[7].State())
	assert.Equal(t, 19, rig.r.Stats("f").Routable)
	assert.Len(t, rig.logs.about("function=f"), 2)
}

// TestSlowTrickleIsHandledNormally: instances fail one at a time, each
// after the previous one was given up on, until 15 of the 20 are gone; the
// share failing at once never exceeds one instance, so none of it is a
// panic.
func TestSlowTrickleIsHandledNormally(t *testing.T) {
	rig := newPanicRig(t, HealthConfig{})
	insts := rig.spread("f", "i", 20)
	rig.start()
	for i, inst := range insts[:15] {
		rig.fail(errDown, inst)
		rig.until(time.Duration(i+1) * 150 * time.Second)
		assert.Equal(t, lifecycle.Draining, inst.State(), "instance %d", i)
		assert.Equal(t, 1, rig.replacements(), "instance %d", i)
	}
	assert.Empty(t, rig.logs.all())
	assert.Equal(t, 5, rig.r.Stats("f").Instances)
}

func TestPanicConfigValidation(t *testing.T) {
	r, err := New(Config{}, Hooks{})
	require.NoError(t, err)
	for _, c := range []HealthConfig{
		{PanicThreshold: 1},
		{PanicThreshold: 1.5},
		{PanicThreshold: math.NaN()},
		{PanicThreshold: math.Inf(1)},
		{PanicMinInstances: 1},
		{PanicMinInstances: -2},
	} {
		_, err := NewHealthMonitor(r, c)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", c)
	}
	h, err := NewHealthMonitor(r, HealthConfig{})
	require.NoError(t, err)
	assert.Equal(t, 0.5, h.cfg.PanicThreshold)
	assert.Equal(t, 2, h.cfg.PanicMinInstances)
	for _, c := range []HealthConfig{{PanicThreshold: -1}, {PanicThreshold: math.Inf(-1)}, {PanicThreshold: 0.99, PanicMinInstances: 10}} {
		_, err := NewHealthMonitor(r, c)
		assert.NoError(t, err, "%+v", c)
	}
	assert.Equal(t, "health_panic", CauseHealthPanic.String())
}

// TestPanicInvariants drives a function through random failure patterns
// (none, one instance, a random share, a whole node, everything) and
// replaces what the router gives up on. After every round: pull checks hold
// out at most the tolerated share of the function, a function in panic has
// none held out, and no round gives up on more than the tolerated share.
func TestPanicInvariants(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			rig := newPanicRig(t, HealthConfig{Readiness: Probe{FailureThreshold: 1 + int(seed%3)}})
			nodes := []string{"n0", "n1", "n2", "n3"}
			next := 0
			var live []*lifecycle.Instance
			add := func() {
				live = append(live, rig.addOn("f", fmt.Sprintf("i%03d", next), nodes[rng.IntN(len(nodes))]))
				next++
			}
			for range 16 {
				add()
			}
			rig.start()
			var panicked, heldOut, gaveUpTotal int // the run is not vacuous
			for rig.at < 30*time.Minute {
				// A new failure pattern for a while.
				for _, inst := range live {
					rig.chk.set(inst.ID, nil)
				}
				switch rng.IntN(5) {
				case 0:
				case 1:
					rig.fail(errDown, live[rng.IntN(len(live))])
				case 2:
					share := rng.Float64()
					for _, inst := range live {
						if rng.Float64() < share {
							rig.fail(errDown, inst)
						}
					}
				case 3:
					node := nodes[rng.IntN(len(nodes))]
					for _, inst := range live {
						if inst.Node == node {
							rig.fail(errDown, inst)
						}
					}
				case 4:
					rig.fail(errDown, live...)
				}
				end := rig.at + time.Duration(1+rng.IntN(240))*time.Second
				for rig.at < end {
					before := rig.r.Stats("f").Instances
					rig.until(rig.at + 500*time.Millisecond)
					st := rig.r.Stats("f")
					gaveUp := rig.replacements()
					assert.LessOrEqual(t, gaveUp, rig.h.tolerated(before), "at %v", rig.at)
					assert.LessOrEqual(t, st.Unhealthy, rig.h.tolerated(st.Instances), "at %v: %+v", rig.at, st)
					if st.Panicking {
						assert.Zero(t, st.Unhealthy, "at %v", rig.at)
						panicked++
					}
					heldOut += st.Unhealthy
					gaveUpTotal += gaveUp
					if t.Failed() {
						return
					}
					for range gaveUp {
						add()
					}
					live = keepRouted(live)
				}
			}
			assert.Positive(t, panicked)
			assert.Positive(t, heldOut)
			assert.Positive(t, gaveUpTotal)
		})
	}
}

// causes returns the distinct "kind/cause" of events, in order of first
// appearance.
func causes(events []Event) []string {
	var out []string
	for _, e := range events {
		if s := e.Kind.String() + "/" + e.Cause.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// keepRouted keeps the instances that are still routed.
func keepRouted(insts []*lifecycle.Instance) []*lifecycle.Instance {
	out := insts[:0]
	for _, inst := range insts {
		if inst.State() != lifecycle.Draining {
			out = append(out, inst)
		}
	}
	return out
}
