// Package leasetest is the conformance suite of [warmpool.LeaseStore] and
// [warmpool.Membership]: the semantics a Manager relies on to share a pod
// population with other managers safely, stated as tests that every
// implementation runs (the in-memory store, contrib/etcd, the Kubernetes
// Leases of contrib/kubernetes, and yours).
//
// A store passes when, under racing holders on one or several handles (the
// clients of separate processes), at most one holder has a live lease on a
// key at any time; fencing tokens grow every time a key changes hands, and
// a stale token is refused by every operation after a takeover; a lease, a
// claim included, lapses when its holder stops renewing it, and cannot be
// renewed after; only the current lease can release or claim a key; and
// members join, update, leave and lapse in the order a watcher sees.
//
// Stores on a virtual clock pass an Advance function and the suite moves
// time; stores on real time (a real etcd) leave it nil, and the suite waits
// for expiries by polling, bounded by a few TTLs, so keep the TTL short.
package leasetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/faasplane/faas/warmpool"
)

// Harness is one store under test, fresh for each subtest: empty, or a
// namespace of a shared server that no other subtest uses.
type Harness struct {
	// Leases are handles on the store: one, or several clients of it as
	// separate processes would have. Holders are spread over them.
	// Required by [TestLeaseStore].
	Leases []warmpool.LeaseStore
	// Memberships are handles on the membership, as Leases. Required by
	// [TestMembership].
	Memberships []warmpool.Membership
	// TTL is the time to live the suite asks for: short, and one the store
	// supports (etcd grants whole seconds). Default 1 s.
	TTL time.Duration
	// Advance moves the store's clock forward by d. Nil for stores on real
	// time: the suite then polls until an expiry is visible.
	Advance func(d time.Duration)
}

func (h *Harness) ttl() time.Duration {
	if h.TTL <= 0 {
		return time.Second
	}
	return h.TTL
}

// lapse waits until cond holds after the leases of the TTL given lapsed: on
// a virtual clock it moves time past it and checks once; on real time it
// polls, bounded by ten TTLs and five seconds.
func (h *Harness) lapse(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ttl := h.ttl()
	if h.Advance != nil {
		h.Advance(ttl + ttl/2)
		if !cond() {
			t.Fatalf("%s: not true once the TTL (%v) passed", what, ttl)
		}
		return
	}
	deadline := time.Now().Add(10*ttl + 5*time.Second)
	tick := time.NewTicker(max(ttl/20, 5*time.Millisecond))
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false %v after the TTL (%v)", what, 10*ttl+5*time.Second, ttl)
		}
		<-tick.C
	}
}

// within waits for cond, bounded by five seconds: the effects of one
// handle may reach another (or a watcher) asynchronously.
func (h *Harness) within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after 5s", what)
		}
		<-tick.C
	}
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must fails the test on err.
func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantErr fails the test unless err wraps want.
func wantErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, want)
	}
}

// keyOf returns a key unique to the subtest, so that stores sharing a
// server across subtests do not collide.
func keyOf(t *testing.T, name string) string {
	return fmt.Sprintf("%s-%s", name, sanitize(t.Name()))
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

// run runs one subtest on a fresh harness.
func run(t *testing.T, name string, open func(t *testing.T) Harness, f func(t *testing.T, h *Harness)) {
	t.Run(name, func(t *testing.T) {
		h := open(t)
		f(t, &h)
	})
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func contextCanceled() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx, cancel
}
