package leasetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/warmpool"
)

// TestLeaseStore runs the LeaseStore conformance suite. open returns a
// fresh harness for each subtest (with at least one Leases handle).
func TestLeaseStore(t *testing.T, open func(t *testing.T) Harness) {
	run(t, "AcquireIsExclusive", open, acquireIsExclusive)
	run(t, "RacingAcquires", open, racingAcquires)
	run(t, "RenewInBatch", open, renewInBatch)
	run(t, "TakeoverFencesTheOldHolder", open, takeoverFences)
	run(t, "NoRenewAfterExpiry", open, noRenewAfterExpiry)
	run(t, "Release", open, release)
	run(t, "Claim", open, claim)
	run(t, "TokensGrow", open, tokensGrow)
	run(t, "CanceledContext", open, canceledContext)
}

// handle returns the handle holder i uses.
func (h *Harness) handle(t *testing.T, i int) warmpool.LeaseStore {
	t.Helper()
	if len(h.Leases) == 0 {
		t.Fatal("leasetest: Harness.Leases is empty")
	}
	return h.Leases[i%len(h.Leases)]
}

func acquireIsExclusive(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	a, b := h.handle(t, 0), h.handle(t, 1)
	k := keyOf(t, "pod")
	l, err := a.Acquire(ctx, k, "A", h.ttl())
	must(t, err, "A acquires a free key")
	if l.Key != k || l.Holder != "A" || l.Token == 0 {
		t.Fatalf("A's lease = %+v, want key %q, holder A and a token", l, k)
	}
	_, err = b.Acquire(ctx, k, "B", h.ttl())
	wantErr(t, err, warmpool.ErrLeaseHeld, "B acquires A's live lease")
	_, err = a.Acquire(ctx, k, "A", h.ttl())
	wantErr(t, err, warmpool.ErrLeaseHeld, "A acquires its own live lease again (a restart must not inherit it)")
	_, err = b.Acquire(ctx, keyOf(t, "other"), "B", h.ttl())
	must(t, err, "B acquires another key")
}

func racingAcquires(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	const holders, keys = 8, 16
	type win struct {
		holder string
		token  uint64
	}
	var mu sync.Mutex
	wins := map[string][]win{}
	var wg sync.WaitGroup
	errs := make(chan error, holders*keys)
	for i := range holders {
		s, holder := h.handle(t, i), fmt.Sprint("H", i)
		wg.Go(func() {
			for k := range keys {
				key := keyOf(t, fmt.Sprint("k", k))
				l, err := s.Acquire(ctx, key, holder, h.ttl())
				switch {
				case err == nil:
					mu.Lock()
					wins[key] = append(wins[key], win{holder, l.Token})
					mu.Unlock()
				case !isHeld(err):
					errs <- fmt.Errorf("%s acquiring %s: %w", holder, key, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(wins) != keys {
		t.Fatalf("%d keys were won, want every one of the %d", len(wins), keys)
	}
	for key, w := range wins {
		if len(w) != 1 {
			t.Errorf("key %s won by %d holders: %v", key, len(w), w)
		}
	}
}

func isHeld(err error) bool { return errorsIs(err, warmpool.ErrLeaseHeld) }

func renewInBatch(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	s := h.handle(t, 0)
	var leases []warmpool.Lease
	for i := range 3 {
		l, err := s.Acquire(ctx, keyOf(t, fmt.Sprint("k", i)), "A", h.ttl())
		must(t, err, "acquire")
		leases = append(leases, l)
	}
	unknown := warmpool.Lease{Key: keyOf(t, "never-acquired"), Holder: "A", Token: leases[2].Token + 1000}
	batch := []warmpool.Lease{leases[0], unknown, leases[1], leases[2]}
	before := time.Now()
	got, err := s.Renew(ctx, batch, h.ttl())
	must(t, err, "renew")
	if len(got) != len(batch) {
		t.Fatalf("Renew returned %d leases for %d", len(got), len(batch))
	}
	for i, l := range got {
		if l.Key != batch[i].Key {
			t.Errorf("Renew result %d is for key %q, want %q (results come in order)", i, l.Key, batch[i].Key)
		}
	}
	if got[1].Token != 0 {
		t.Errorf("a lease never granted was renewed: %+v", got[1])
	}
	for _, i := range []int{0, 2, 3} {
		if got[i].Token != batch[i].Token {
			t.Errorf("renewed lease %d has token %d, want %d (renewal keeps the token)", i, got[i].Token, batch[i].Token)
		}
		if got[i].Expires.Before(batch[i].Expires) {
			t.Errorf("renewal moved the expiry back: %v < %v", got[i].Expires, batch[i].Expires)
		}
		if h.Advance == nil && got[i].Expires.Before(before) {
			t.Errorf("renewed lease expires at %v, before the renewal (%v)", got[i].Expires, before)
		}
	}
	empty, err := s.Renew(ctx, nil, h.ttl())
	must(t, err, "renew nothing")
	if len(empty) != 0 {
		t.Errorf("Renew(nil) = %v", empty)
	}
}

func takeoverFences(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	a, b := h.handle(t, 0), h.handle(t, 1)
	k := keyOf(t, "pod")
	old, err := a.Acquire(ctx, k, "A", h.ttl())
	must(t, err, "A acquires")
	var cur warmpool.Lease
	h.lapse(t, "B acquires once A's lease lapsed", func() bool {
		l, err := b.Acquire(ctx, k, "B", h.ttl())
		if err != nil && !isHeld(err) {
			t.Fatalf("B acquiring: %v", err)
		}
		cur = l
		return err == nil
	})
	if cur.Token <= old.Token {
		t.Fatalf("takeover token %d is not greater than the old %d", cur.Token, old.Token)
	}
	r, err := a.Renew(ctx, []warmpool.Lease{old}, h.ttl())
	must(t, err, "A renews its stale lease")
	if r[0].Token != 0 {
		t.Errorf("A's stale lease was renewed after the takeover: %+v", r[0])
	}
	wantErr(t, a.Claim(ctx, old), warmpool.ErrLeaseLost, "A claims with its stale token")
	wantErr(t, a.Release(ctx, old), warmpool.ErrLeaseLost, "A releases with its stale token")
	r, err = b.Renew(ctx, []warmpool.Lease{cur}, h.ttl())
	must(t, err, "B renews")
	if r[0].Token != cur.Token {
		t.Errorf("the stale holder's operations disturbed B's lease: %+v", r[0])
	}
	must(t, b.Claim(ctx, r[0]), "B claims")
}

func noRenewAfterExpiry(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	a, b := h.handle(t, 0), h.handle(t, 1)
	k, probe := keyOf(t, "pod"), keyOf(t, "probe")
	l, err := a.Acquire(ctx, k, "A", h.ttl())
	must(t, err, "acquire")
	_, err = a.Acquire(ctx, probe, "A", h.ttl())
	must(t, err, "acquire the probe key")
	// The probe key, acquired with the same TTL, shows when A's leases
	// lapsed without touching k.
	h.lapse(t, "A's leases lapse", func() bool {
		_, err := b.Acquire(ctx, probe, "B", h.ttl())
		return err == nil
	})
	r, err := a.Renew(ctx, []warmpool.Lease{l}, h.ttl())
	must(t, err, "renew")
	if r[0].Token != 0 {
		t.Fatalf("an expired lease was renewed: %+v", r[0])
	}
	wantErr(t, a.Claim(ctx, l), warmpool.ErrLeaseLost, "claim with an expired lease")
	again, err := a.Acquire(ctx, k, "A", h.ttl())
	must(t, err, "the key is free after its lease lapsed")
	if again.Token <= l.Token {
		t.Errorf("token %d after the lapse is not greater than %d", again.Token, l.Token)
	}
}

func release(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	a, b := h.handle(t, 0), h.handle(t, 1)
	k := keyOf(t, "pod")
	l, err := a.Acquire(ctx, k, "A", h.ttl())
	must(t, err, "acquire")
	forged := warmpool.Lease{Key: k, Holder: "B", Token: l.Token + 1}
	wantErr(t, b.Release(ctx, forged), warmpool.ErrLeaseLost, "a non-holder releases with another token")
	_, err = b.Acquire(ctx, k, "B", h.ttl())
	wantErr(t, err, warmpool.ErrLeaseHeld, "the key is still A's after a refused release")
	must(t, a.Release(ctx, l), "the holder releases")
	wantErr(t, a.Release(ctx, l), warmpool.ErrLeaseLost, "releasing twice")
	nl, err := b.Acquire(ctx, k, "B", h.ttl())
	must(t, err, "the released key is free at once")
	if nl.Token <= l.Token {
		t.Errorf("token %d after a release is not greater than %d", nl.Token, l.Token)
	}
	r, err := a.Renew(ctx, []warmpool.Lease{l}, h.ttl())
	must(t, err, "renew")
	if r[0].Token != 0 {
		t.Errorf("a released lease was renewed: %+v", r[0])
	}
}

func claim(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	a, b := h.handle(t, 0), h.handle(t, 1)
	k := keyOf(t, "pod")
	l, err := a.Acquire(ctx, k, "A", h.ttl())
	must(t, err, "acquire")
	must(t, a.Claim(ctx, l), "claim")
	must(t, a.Claim(ctx, l), "claiming again is safe (a retry)")
	_, err = b.Acquire(ctx, k, "B", h.ttl())
	wantErr(t, err, warmpool.ErrClaimed, "acquiring a claimed key")
	r, err := a.Renew(ctx, []warmpool.Lease{l}, h.ttl())
	must(t, err, "renew the claim")
	if r[0].Token != l.Token {
		t.Fatalf("a claim was not renewed: %+v", r[0])
	}
	_, err = b.Acquire(ctx, k, "B", h.ttl())
	wantErr(t, err, warmpool.ErrClaimed, "a renewed claim stays claimed")
	must(t, a.Release(ctx, r[0]), "release the claim")
	nl, err := b.Acquire(ctx, k, "B", h.ttl())
	must(t, err, "a released claim frees the key")

	// A claim whose holder stops renewing lapses with it.
	must(t, b.Claim(ctx, nl), "B claims")
	wantErr(t, a.Claim(ctx, l), warmpool.ErrLeaseLost, "A claims with its released token")
	h.lapse(t, "an unrenewed claim lapses", func() bool {
		_, err := a.Acquire(ctx, k, "A", h.ttl())
		return err == nil
	})
}

func tokensGrow(t *testing.T, h *Harness) {
	ctx := ctxOf(t)
	k := keyOf(t, "pod")
	var last uint64
	for i := range 10 {
		s, holder := h.handle(t, i), fmt.Sprint("H", i%3)
		l, err := s.Acquire(ctx, k, holder, h.ttl())
		must(t, err, "acquire")
		if l.Token <= last {
			t.Fatalf("round %d: token %d is not greater than %d", i, l.Token, last)
		}
		last = l.Token
		if i%2 == 0 {
			must(t, s.Claim(ctx, l), "claim")
		}
		must(t, s.Release(ctx, l), "release")
	}
}

func canceledContext(t *testing.T, h *Harness) {
	s := h.handle(t, 0)
	ctx := ctxOf(t)
	k := keyOf(t, "pod")
	done, cancel := contextCanceled()
	defer cancel()
	if _, err := s.Acquire(done, k, "A", h.ttl()); err == nil {
		t.Fatal("Acquire with a canceled context succeeded")
	}
	l, err := s.Acquire(ctx, k, "A", h.ttl())
	must(t, err, "the canceled Acquire changed nothing")
	if err := s.Release(done, l); err == nil {
		t.Fatal("Release with a canceled context succeeded")
	}
	if err := s.Claim(done, l); err == nil {
		t.Fatal("Claim with a canceled context succeeded")
	}
	if _, err := s.Renew(done, []warmpool.Lease{l}, h.ttl()); err == nil {
		t.Fatal("Renew with a canceled context succeeded")
	}
	_, err = s.Acquire(ctx, k, "B", h.ttl())
	wantErr(t, err, warmpool.ErrLeaseHeld, "the canceled Release changed nothing")
	must(t, s.Release(ctx, l), "release")
}
