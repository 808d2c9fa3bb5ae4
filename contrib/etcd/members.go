package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/faasplane/faas/warmpool"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// memberState is a member this store heartbeats: the etcd lease its key
// lives on and the metadata last written.
type memberState struct {
	lease clientv3.LeaseID
	secs  int64
	m     warmpool.Member
}

// Heartbeat implements [warmpool.Membership]. The member's key lives on an
// etcd lease of its own with ttl rounded up to whole seconds. The first
// heartbeat grants the lease and writes the key; the next ones cost one
// keep-alive request, plus a write when the metadata changed. When the
// lease is gone (the member lapsed, or left through another handle), or
// the ttl changed, a new lease is granted and the key written again.
func (s *Store) Heartbeat(ctx context.Context, m warmpool.Member, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("etcd: heartbeat of %q needs a ttl > 0", m.ID)
	}
	val, err := encodeMember(m)
	if err != nil {
		return err
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("etcd: heartbeat of %q: %w", m.ID, err)
	}
	defer cancel()
	s.memberMu.Lock()
	defer s.memberMu.Unlock()
	key, secs := s.memPfx+m.ID, ttlSeconds(ttl)
	st := s.members[m.ID]
	if st != nil && st.secs == secs {
		_, err := s.client.KeepAliveOnce(rctx, st.lease)
		switch {
		case err == nil && st.m == m:
			return nil
		case err == nil:
			_, err = s.client.Put(rctx, key, string(val), clientv3.WithLease(st.lease))
			if err == nil {
				st.m = m
				return nil
			}
			if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return fmt.Errorf("etcd: heartbeat of %q: %w", m.ID, err)
			}
		case !errors.Is(err, rpctypes.ErrLeaseNotFound):
			return fmt.Errorf("etcd: heartbeat of %q: %w", m.ID, err)
		}
		// The lease is gone: join again.
	}
	g, err := s.client.Grant(rctx, secs)
	if err != nil {
		return fmt.Errorf("etcd: heartbeat of %q: %w", m.ID, err)
	}
	if _, err := s.client.Put(rctx, key, string(val), clientv3.WithLease(g.ID)); err != nil {
		// The new lease carries nothing and lapses by itself.
		return fmt.Errorf("etcd: heartbeat of %q: %w", m.ID, err)
	}
	s.members[m.ID] = &memberState{lease: g.ID, secs: secs, m: m}
	if st != nil && st.secs != secs {
		// The key moved to the new lease; the old one (of the old TTL)
		// carries nothing now. It lapses anyway if this fails.
		_, _ = s.client.Revoke(rctx, st.lease)
	}
	return nil
}

// Leave implements [warmpool.Membership]: it revokes the etcd lease of the
// member's key, whichever handle heartbeats it, so that the key disappears
// at once and every watcher sees the member go.
func (s *Store) Leave(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("etcd: leave needs a member ID")
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("etcd: leave %q: %w", id, err)
	}
	defer cancel()
	s.memberMu.Lock()
	defer s.memberMu.Unlock()
	key := s.memPfx + id
	resp, err := s.client.Get(rctx, key)
	if err != nil {
		return fmt.Errorf("etcd: leave %q: %w", id, err)
	}
	if len(resp.Kvs) == 1 {
		kv := resp.Kvs[0]
		if kv.Lease != 0 {
			_, err = s.client.Revoke(rctx, clientv3.LeaseID(kv.Lease))
		} else {
			// Not written by a heartbeat; remove it all the same.
			_, err = s.client.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).Then(clientv3.OpDelete(key)).Commit()
		}
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("etcd: leave %q: %w", id, err)
		}
	}
	if st := s.members[id]; st != nil {
		delete(s.members, id)
		if len(resp.Kvs) == 0 || st.lease != clientv3.LeaseID(resp.Kvs[0].Lease) {
			_, _ = s.client.Revoke(rctx, st.lease) // carries nothing now
		}
	}
	return nil
}

// Members implements [warmpool.Membership] with one range request. A
// member whose lease expired is listed until etcd revokes the lease, which
// its leader does within about half a second of the expiry.
func (s *Store) Members(ctx context.Context) ([]warmpool.Member, error) {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd: members: %w", err)
	}
	defer cancel()
	resp, err := s.client.Get(rctx, s.memPfx, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd: members: %w", err)
	}
	set := make(map[string]warmpool.Member, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		s.applyPut(set, kv.Key, kv.Value)
	}
	return sorted(set), nil
}

// applyPut records a member's key and value in set; a value this package
// did not write removes the key's member (and is logged).
func (s *Store) applyPut(set map[string]warmpool.Member, key, value []byte) {
	id := strings.TrimPrefix(string(key), s.memPfx)
	m, err := decodeMember(id, value)
	if err != nil {
		s.log.Warn("etcd: a member key holds a value this store did not write", "key", string(key), "err", err)
		delete(set, id)
		return
	}
	set[id] = m
}

func sorted(set map[string]warmpool.Member) []warmpool.Member {
	out := make([]warmpool.Member, 0, len(set))
	for _, m := range set {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b warmpool.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Watch implements [warmpool.MembershipWatcher]: it reads the members,
// sends them, and watches their keys from the revision of that read on, so
// that no change is missed; after every batch of changes it sends the
// whole set again. The channel holds one set: a consumer that falls behind
// gets the latest. It closes when ctx ends, when the store closes, and
// when the watch fails (its revision compacted, or etcd without a leader):
// the consumer then watches again.
func (s *Store) Watch(ctx context.Context) (<-chan []warmpool.Member, error) {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd: watch members: %w", err)
	}
	resp, err := s.client.Get(rctx, s.memPfx, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcd: watch members: %w", err)
	}
	set := make(map[string]warmpool.Member, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		s.applyPut(set, kv.Key, kv.Value)
	}
	out := make(chan []warmpool.Member, 1)
	out <- sorted(set)

	wctx, stop := context.WithCancel(ctx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		stop()
		return nil, fmt.Errorf("etcd: watch members: %w", ErrClosed)
	}
	s.wg.Add(1) // before Close's Wait: Close sets closed under mu first
	s.mu.Unlock()
	unhook := context.AfterFunc(s.ctx, stop)
	// WithRequireLeader: a member cut off from its cluster ends the watch
	// rather than going silent.
	wch := s.client.Watch(clientv3.WithRequireLeader(wctx), s.memPfx, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer unhook()
		defer stop()
		for wr := range wch {
			if err := wr.Err(); err != nil || wr.Canceled {
				if wctx.Err() == nil {
					s.log.Warn("etcd: the watch of members ended", "err", err)
				}
				stop()
				for range wch { // until the client closes it
				}
				return
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case mvccpb.PUT:
					s.applyPut(set, ev.Kv.Key, ev.Kv.Value)
				case mvccpb.DELETE:
					delete(set, strings.TrimPrefix(string(ev.Kv.Key), s.memPfx))
				}
			}
			if len(wr.Events) > 0 {
				select {
				case <-out: // replaced by the latest
				default:
				}
				out <- sorted(set)
			}
		}
	}()
	return out, nil
}
