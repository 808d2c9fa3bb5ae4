package leasetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/faasplane/faas/warmpool"
)

// TestMembership runs the Membership conformance suite (and, for a
// membership that implements [warmpool.MembershipWatcher], the watch
// tests). open returns a fresh harness for each subtest (with at least one
// Memberships handle).
func TestMembership(t *testing.T, open func(t *testing.T) Harness) {
	run(t, "JoinUpdateLeave", open, joinUpdateLeave)
	run(t, "HeartbeatLapses", open, heartbeatLapses)
	run(t, "WatchSeesChangesInOrder", open, watchInOrder)
	run(t, "WatchEndsWithItsContext", open, watchEnds)
	run(t, "RefusesBadMembers", open, refusesBadMembers)
}

func (h *Harness) member(t *testing.T, i int) warmpool.Membership {
	t.Helper()
	if len(h.Memberships) == 0 {
		t.Fatal("leasetest: Harness.Memberships is empty")
	}
	return h.Memberships[i%len(h.Memberships)]
}

// ids returns the IDs of ms, failing unless they are sorted.
func ids(t *testing.T, ms []warmpool.Member) []string {
	t.Helper()
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	if !slices.IsSorted(out) {
		t.Fatalf("members %v are not sorted by ID", out)
	}
	return out
}

func membersOf(t *testing.T, m warmpool.Membership) []warmpool.Member {
	t.Helper()
	ms, err := m.Members(ctxOf(t))
	must(t, err, "members")
	ids(t, ms)
	return ms
}

func joinUpdateLeave(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	m0, m1 := h.member(t, 0), h.member(t, 1)
	b := warmpool.Member{ID: keyOf(t, "b"), Addr: "127.0.0.1:9002", Weight: 2}
	a := warmpool.Member{ID: keyOf(t, "a"), Addr: "127.0.0.1:9001", Weight: 1}
	must(t, m1.Heartbeat(ctx, b, h.ttl()), "b joins")
	must(t, m0.Heartbeat(ctx, a, h.ttl()), "a joins")
	var got []warmpool.Member
	h.within(t, "both members are listed with their metadata, sorted", func() bool {
		got = membersOf(t, m0)
		return slices.Equal(got, []warmpool.Member{a, b})
	})
	a.Addr = "127.0.0.1:9009"
	must(t, m0.Heartbeat(ctx, a, h.ttl()), "a moves")
	h.within(t, "a heartbeat updates the metadata", func() bool {
		return slices.Equal(membersOf(t, m1), []warmpool.Member{a, b})
	})
	must(t, m1.Leave(ctx, a.ID), "a leaves (through another handle)")
	h.within(t, "a member that left is gone at once", func() bool {
		return slices.Equal(membersOf(t, m0), []warmpool.Member{b})
	})
	must(t, m0.Leave(ctx, keyOf(t, "never-joined")), "leaving when not a member is not an error")
	must(t, m1.Leave(ctx, b.ID), "b leaves")
}

func heartbeatLapses(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	m := h.member(t, 0)
	live := warmpool.Member{ID: keyOf(t, "live"), Weight: 1}
	dead := warmpool.Member{ID: keyOf(t, "dead"), Weight: 1}
	must(t, m.Heartbeat(ctx, dead, h.ttl()), "heartbeat")
	must(t, m.Heartbeat(ctx, live, h.ttl()), "heartbeat")
	h.lapse(t, "a member that stops heartbeating disappears", func() bool {
		// live keeps beating; on a virtual clock this is after the move.
		must(t, m.Heartbeat(ctx, live, 3*h.ttl()), "heartbeat")
		return slices.Equal(ids(t, membersOf(t, m)), []string{live.ID})
	})
	must(t, m.Heartbeat(ctx, dead, h.ttl()), "the dead member comes back")
	h.within(t, "a returning member is listed again", func() bool {
		return slices.Equal(ids(t, membersOf(t, m)), []string{dead.ID, live.ID})
	})
	must(t, m.Leave(ctx, dead.ID), "leave")
	must(t, m.Leave(ctx, live.ID), "leave")
}

// watchInOrder makes a sequence of changes and checks that the sets the
// watcher receives are states of that sequence, in its order, ending with
// the last one.
func watchInOrder(t *testing.T, h *Harness) {
	w, ok := h.member(t, 0).(warmpool.MembershipWatcher)
	if !ok {
		t.Logf("the membership does not implement warmpool.MembershipWatcher")
		return
	}
	ctx := ctxOf(t)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	ch, err := w.Watch(wctx)
	must(t, err, "watch")
	first := <-ch
	ids(t, first)
	if len(first) != 0 {
		t.Fatalf("a fresh membership's first set is %v", first)
	}
	m := h.member(t, 1)
	x := func(i int) warmpool.Member {
		return warmpool.Member{ID: keyOf(t, fmt.Sprint("m", i)), Addr: fmt.Sprint("127.0.0.1:", 9000+i), Weight: 1}
	}
	states := [][]warmpool.Member{{}}
	var cur []warmpool.Member
	apply := func(join bool, mem warmpool.Member) {
		if join {
			must(t, m.Heartbeat(ctx, mem, 3*h.ttl()), "heartbeat")
			cur = append(slices.DeleteFunc(cur, func(o warmpool.Member) bool { return o.ID == mem.ID }), mem)
		} else {
			must(t, m.Leave(ctx, mem.ID), "leave")
			cur = slices.DeleteFunc(cur, func(o warmpool.Member) bool { return o.ID == mem.ID })
		}
		slices.SortFunc(cur, func(a, b warmpool.Member) int { return compare(a.ID, b.ID) })
		states = append(states, slices.Clone(cur))
	}
	apply(true, x(1))
	apply(true, x(2))
	apply(true, x(3))
	apply(false, x(2))
	moved := x(1)
	moved.Addr = "127.0.0.1:9999"
	apply(true, moved)
	apply(false, x(1))
	apply(true, x(4))

	at := 0
	last := states[len(states)-1]
	h.within(t, "the watcher sees the last state", func() bool {
		for {
			select {
			case got, open := <-ch:
				if !open {
					t.Fatal("the watch closed before its context ended")
				}
				i := slices.IndexFunc(states[at:], func(s []warmpool.Member) bool { return slices.Equal(s, got) })
				if i < 0 {
					t.Fatalf("the watcher received %v, which is no state at or after state %d of %v", got, at, states)
				}
				at += i
				if at == len(states)-1 {
					return true
				}
			default:
				return false
			}
		}
	})
	if !slices.Equal(states[at], last) {
		t.Fatalf("the watcher ended at %v, want %v", states[at], last)
	}
	for _, mem := range cur {
		must(t, m.Leave(ctx, mem.ID), "leave")
	}
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func watchEnds(t *testing.T, h *Harness) {
	w, ok := h.member(t, 0).(warmpool.MembershipWatcher)
	if !ok {
		t.Logf("the membership does not implement warmpool.MembershipWatcher")
		return
	}
	wctx, stop := context.WithCancel(ctxOf(t))
	ch, err := w.Watch(wctx)
	must(t, err, "watch")
	<-ch
	stop()
	h.within(t, "the channel closes once the context ends", func() bool {
		select {
		case _, open := <-ch:
			return !open
		default:
			return false
		}
	})
	done, cancel := contextCanceled()
	defer cancel()
	if _, err := w.Watch(done); err == nil {
		t.Fatal("Watch with a canceled context succeeded")
	}
}

func refusesBadMembers(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	m := h.member(t, 0)
	if err := m.Heartbeat(ctx, warmpool.Member{}, h.ttl()); err == nil {
		t.Error("a member without an ID was accepted")
	}
	if err := m.Heartbeat(ctx, warmpool.Member{ID: keyOf(t, "x")}, 0); err == nil {
		t.Error("a heartbeat without a TTL was accepted")
	}
	if err := m.Heartbeat(ctx, warmpool.Member{ID: keyOf(t, "x"), Weight: -1}, h.ttl()); err == nil {
		t.Error("a negative weight was accepted")
	}
	if ms := membersOf(t, m); len(ms) != 0 {
		t.Errorf("refused heartbeats left members: %v", ms)
	}
}
