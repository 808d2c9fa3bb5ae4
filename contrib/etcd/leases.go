package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/faasplane/faas/warmpool"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// holderTTL names the etcd lease that carries a holder's keys of one TTL.
// A Manager asks for one TTL only, so it has one etcd lease.
type holderTTL struct {
	holder string
	secs   int64
}

// etcdLease is an etcd lease this store granted to a holder. Its fields
// after id are guarded by Store.mu.
type etcdLease struct {
	id     clientv3.LeaseID
	holder string
	key    holderTTL
	ttl    time.Duration // as granted (etcd may raise a TTL to its minimum)
	// expires is a conservative estimate of when etcd expires the lease:
	// the local time taken before the latest grant or keep-alive that
	// succeeded, plus the TTL.
	expires time.Time
	lost    bool // etcd reported it gone: every key on it is lost
}

// trackedKey is a pod key this store put on one of its etcd leases, with
// its token (the key's create revision).
type trackedKey struct {
	lease *etcdLease
	token int64
}

// Acquire implements [warmpool.LeaseStore]. The key is created in one
// transaction if it does not exist, on the holder's etcd lease (granted on
// first use with ttl rounded up to whole seconds); its create revision is
// the token. A key that exists is refused with ErrClaimed or ErrLeaseHeld,
// whoever holds it, with one exception: when an earlier Acquire of the key
// by this store failed without learning whether etcd applied it (a timeout
// or a broken connection), and etcd did, the key is on this store's etcd
// lease of the same holder, and the next Acquire of the key by the holder
// through this store returns that lease. It was never anybody else's, so
// nothing is inherited; without this the pod would stay leased to a holder
// that does not know it, and nobody could adopt it until the holder died.
func (s *Store) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (warmpool.Lease, error) {
	if key == "" || holder == "" || ttl <= 0 {
		return warmpool.Lease{}, errors.New("etcd: acquire needs a key, a holder and a ttl > 0")
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return warmpool.Lease{}, fmt.Errorf("etcd: acquire %q: %w", key, err)
	}
	defer cancel()
	s.mu.Lock()
	s.inflight[key]++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.inflight[key]--; s.inflight[key] == 0 {
			delete(s.inflight, key)
		}
		s.mu.Unlock()
	}()
	k := s.podsPfx + key
	val := string(encodeLease(leaseValue{Holder: holder}))
	ht := holderTTL{holder, ttlSeconds(ttl)}
	// A second attempt follows only the discovery that the holder's etcd
	// lease is gone (it lapsed since its last renewal): a new one is
	// granted.
	for attempt := 0; ; attempt++ {
		el, err := s.leaseFor(rctx, ht)
		if err != nil {
			return warmpool.Lease{}, fmt.Errorf("etcd: acquire %q: etcd lease of %q: %w", key, holder, err)
		}
		resp, err := s.client.Txn(rctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, val, clientv3.WithLease(el.id))).
			Else(clientv3.OpGet(k)).
			Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
			s.lose(el)
			continue
		}
		if err != nil {
			if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				s.mu.Lock()
				s.pending[key] = el // etcd may have applied it
				s.mu.Unlock()
			}
			return warmpool.Lease{}, fmt.Errorf("etcd: acquire %q: %w", key, err)
		}
		if !resp.Succeeded {
			return s.refusal(key, holder, resp)
		}
		// One transaction is one revision: the key's create revision.
		token := resp.Header.Revision
		s.mu.Lock()
		delete(s.pending, key) // an earlier attempt did not apply
		if el.lost && attempt == 0 {
			// A concurrent Renew found the etcd lease gone after this
			// put: the key went with it.
			s.mu.Unlock()
			continue
		}
		s.tracked[key] = trackedKey{lease: el, token: token}
		expires := el.expires
		s.mu.Unlock()
		return warmpool.Lease{Key: key, Holder: holder, Token: uint64(token), Expires: expires}, nil
	}
}

// refusal answers an Acquire whose key exists: an error, or the lease of
// an earlier Acquire whose answer was lost (see Acquire).
func (s *Store) refusal(key, holder string, resp *clientv3.TxnResponse) (warmpool.Lease, error) {
	var kv *mvccpb.KeyValue
	if len(resp.Responses) == 1 {
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) == 1 {
			kv = r.Kvs[0]
		}
	}
	if kv == nil {
		// A transaction sees one revision: the key its compare found is
		// in its get. Be conservative anyway.
		return warmpool.Lease{}, fmt.Errorf("etcd: acquire %q by %q: %w", key, holder, warmpool.ErrLeaseHeld)
	}
	v, err := decodeLease(kv.Value)
	if err != nil {
		// Not ours to overwrite: held by someone unknown.
		s.log.Warn("etcd: a pod key holds a value this store did not write", "key", key, "err", err)
		return warmpool.Lease{}, fmt.Errorf("etcd: acquire %q by %q: %w (%w)", key, holder, warmpool.ErrLeaseHeld, err)
	}
	s.mu.Lock()
	el := s.pending[key]
	delete(s.pending, key) // resolved, one way or the other
	tr, tracked := s.tracked[key]
	lost := el != nil && !v.Claimed && v.Holder == holder && el.holder == holder && !el.lost &&
		clientv3.LeaseID(kv.Lease) == el.id && s.inflight[key] == 1 && (!tracked || tr.token != kv.CreateRevision)
	if lost {
		s.tracked[key] = trackedKey{lease: el, token: kv.CreateRevision}
		l := warmpool.Lease{Key: key, Holder: holder, Token: uint64(kv.CreateRevision), Expires: el.expires}
		s.mu.Unlock()
		return l, nil
	}
	s.mu.Unlock()
	if v.Claimed {
		return warmpool.Lease{}, fmt.Errorf("etcd: acquire %q: %w (by %q)", key, warmpool.ErrClaimed, v.Holder)
	}
	return warmpool.Lease{}, fmt.Errorf("etcd: acquire %q by %q: %w (holder %q)", key, holder, warmpool.ErrLeaseHeld, v.Holder)
}

// leaseFor returns the etcd lease the holder's new keys of a TTL go on:
// the current one, kept alive first if half its TTL has passed since it
// was last (so that an acquired lease always has at least half a TTL to
// live), or a new one.
func (s *Store) leaseFor(ctx context.Context, ht holderTTL) (*etcdLease, error) {
	for {
		s.mu.Lock()
		if el := s.current[ht]; el != nil {
			fresh := s.now().Add(el.ttl / 2).Before(el.expires)
			s.mu.Unlock()
			if fresh {
				return el, nil
			}
			start := s.now()
			resp, err := s.client.KeepAliveOnce(ctx, el.id)
			switch {
			case err == nil:
				s.extend(el, start, resp.TTL)
				return el, nil
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				s.lose(el)
				continue
			default:
				return nil, err
			}
		}
		if wait, ok := s.granting[ht]; ok {
			// Another Acquire of the holder is granting: share its lease.
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		s.granting[ht] = done
		s.mu.Unlock()

		start := s.now()
		resp, err := s.client.Grant(ctx, ht.secs)
		s.mu.Lock()
		delete(s.granting, ht)
		close(done)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		ttl := time.Duration(resp.TTL) * time.Second
		el := &etcdLease{id: resp.ID, holder: ht.holder, key: ht, ttl: ttl, expires: start.Add(ttl)}
		s.current[ht] = el
		s.mu.Unlock()
		return el, nil
	}
}

// extend records a keep-alive of el that succeeded, sent at start.
func (s *Store) extend(el *etcdLease, start time.Time, ttlSecs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el.ttl = time.Duration(ttlSecs) * time.Second
	if e := start.Add(el.ttl); e.After(el.expires) {
		el.expires = e
	}
}

// lose records that etcd has no lease el any more: every key the store put
// on it is gone, and the holder's next Acquire grants a new lease.
func (s *Store) lose(el *etcdLease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loseLocked(el)
}

func (s *Store) loseLocked(el *etcdLease) {
	if el.lost {
		return
	}
	el.lost = true
	if s.current[el.key] == el {
		delete(s.current, el.key)
	}
	for k, tr := range s.tracked {
		if tr.lease == el {
			delete(s.tracked, k)
		}
	}
	for k, p := range s.pending {
		if p == el {
			delete(s.pending, k)
		}
	}
}

// Renew implements [warmpool.LeaseStore] with one keep-alive request per
// etcd lease in the batch (one per holder), whatever the number of leases:
// a holder's keys live and die with its etcd lease. A lease this store did
// not acquire, or released or lost since, comes back with Token 0 without
// a request; when etcd no longer has a holder's lease, all of that
// holder's leases come back with Token 0 at once. Each renewed lease
// expires, by its etcd lease's TTL, after the local time taken before the
// request; the ttl argument is checked but the TTL is the one the lease
// was acquired with (a holder asking for another TTL gets another etcd
// lease). On an error nothing changes.
//
// Renew trusts what this store did: a key released or overwritten behind
// its back (through another Store, or by hand) is reported renewed while
// its holder's etcd lease lives. That is safe: Claim and Release are
// checked by etcd, so no pod is handed out on such a lease.
func (s *Store) Renew(ctx context.Context, leases []warmpool.Lease, ttl time.Duration) ([]warmpool.Lease, error) {
	if ttl <= 0 {
		return nil, errors.New("etcd: renew needs a ttl > 0")
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd: renew: %w", err)
	}
	defer cancel()
	out := make([]warmpool.Lease, len(leases))
	var batch []*etcdLease
	inBatch := make(map[*etcdLease]bool)
	s.mu.Lock()
	for i, l := range leases {
		out[i] = warmpool.Lease{Key: l.Key, Holder: l.Holder}
		if el := s.trackedLocked(l); el != nil && !inBatch[el] {
			inBatch[el] = true
			batch = append(batch, el)
		}
	}
	s.mu.Unlock()

	start := s.now()
	ttls := make([]int64, len(batch)) // 0: lost
	for i, el := range batch {
		resp, err := s.client.KeepAliveOnce(rctx, el.id)
		switch {
		case err == nil:
			ttls[i] = resp.TTL
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
		default:
			return nil, fmt.Errorf("etcd: renew %d leases: %w", len(leases), err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for i, el := range batch {
		if ttls[i] == 0 {
			s.loseLocked(el)
			continue
		}
		el.ttl = time.Duration(ttls[i]) * time.Second
		if e := start.Add(el.ttl); e.After(el.expires) {
			el.expires = e
		}
	}
	for i, l := range leases {
		if el := s.trackedLocked(l); el != nil && inBatch[el] {
			out[i] = warmpool.Lease{Key: l.Key, Holder: el.holder, Token: l.Token, Expires: el.expires}
		}
	}
	return out, nil
}

// trackedLocked returns the live etcd lease l's key was put on with l's
// token by this store, or nil.
func (s *Store) trackedLocked(l warmpool.Lease) *etcdLease {
	tr, ok := s.tracked[l.Key]
	if !ok || l.Token == 0 || uint64(tr.token) != l.Token || tr.lease.lost {
		return nil
	}
	return tr.lease
}

// revision returns l's token as the create revision it is, or false for a
// token no key can have.
func revision(l warmpool.Lease) (int64, bool) {
	if l.Token == 0 || l.Token > math.MaxInt64 {
		return 0, false
	}
	return int64(l.Token), true
}

// Release implements [warmpool.LeaseStore]: a transaction deletes the key
// if its create revision is still l's token.
func (s *Store) Release(ctx context.Context, l warmpool.Lease) error {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("etcd: release %q: %w", l.Key, err)
	}
	defer cancel()
	rev, ok := revision(l)
	if !ok || l.Key == "" {
		return fmt.Errorf("etcd: release %q with token %d: %w", l.Key, l.Token, warmpool.ErrLeaseLost)
	}
	k := s.podsPfx + l.Key
	resp, err := s.client.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", rev)).
		Then(clientv3.OpDelete(k)).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd: release %q: %w", l.Key, err)
	}
	s.mu.Lock()
	if tr, ok := s.tracked[l.Key]; ok && tr.token == rev {
		delete(s.tracked, l.Key)
	}
	s.mu.Unlock()
	if !resp.Succeeded {
		return fmt.Errorf("etcd: release %q with token %d: %w", l.Key, l.Token, warmpool.ErrLeaseLost)
	}
	return nil
}

// Claim implements [warmpool.LeaseStore]: a transaction marks the key
// claimed if its create revision is still l's token, keeping it on its
// etcd lease (so the claim lapses with its holder) and its token.
func (s *Store) Claim(ctx context.Context, l warmpool.Lease) error {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("etcd: claim %q: %w", l.Key, err)
	}
	defer cancel()
	rev, ok := revision(l)
	if !ok || l.Key == "" || l.Holder == "" {
		return fmt.Errorf("etcd: claim %q with token %d: %w", l.Key, l.Token, warmpool.ErrLeaseLost)
	}
	k := s.podsPfx + l.Key
	resp, err := s.client.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, string(encodeLease(leaseValue{Holder: l.Holder, Claimed: true})), clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd: claim %q: %w", l.Key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd: claim %q with token %d: %w", l.Key, l.Token, warmpool.ErrLeaseLost)
	}
	return nil
}

// Entry is one pod lease as etcd has it, for tools and tests: what
// [Store.Leases] lists.
type Entry struct {
	// Key is the leased key (a pod ID), Holder its holder and Token its
	// fencing token (the key's create revision).
	Key, Holder string
	Token       uint64
	// Claimed reports that the pod was handed to a function.
	Claimed bool
	// LeaseID is the etcd lease the key lives on.
	LeaseID clientv3.LeaseID
}

// Leases lists every pod lease under the store's prefix, sorted by key, in
// one request. Values this package did not write are skipped (and logged).
func (s *Store) Leases(ctx context.Context) ([]Entry, error) {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd: list leases: %w", err)
	}
	defer cancel()
	resp, err := s.client.Get(rctx, s.podsPfx, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd: list leases: %w", err)
	}
	out := make([]Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := strings.TrimPrefix(string(kv.Key), s.podsPfx)
		v, err := decodeLease(kv.Value)
		if err != nil {
			s.log.Warn("etcd: a pod key holds a value this store did not write", "key", key, "err", err)
			continue
		}
		out = append(out, Entry{Key: key, Holder: v.Holder, Token: uint64(kv.CreateRevision), Claimed: v.Claimed, LeaseID: clientv3.LeaseID(kv.Lease)})
	}
	return out, nil
}
