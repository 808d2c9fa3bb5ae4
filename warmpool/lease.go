package warmpool

import (
	"context"
	"errors"
	"time"
)

// Lease is a holder's time-bounded right to manage one key (a pod ID). The
// store numbers the leases of a key with fencing tokens that increase every
// time the key changes hands, and checks the token on every operation, so
// that a holder that lost its lease (paused, partitioned, slow clock)
// cannot act on the key any more, whatever it believes.
type Lease struct {
	// Key is the leased key: a pod ID.
	Key string
	// Holder is the manager that holds the lease.
	Holder string
	// Token is the fencing token (> 0).
	Token uint64
	// Expires is when the lease lapses unless renewed, by the store's
	// clock.
	Expires time.Time
}

// Valid reports whether l is a lease (Token > 0) that has not expired at
// now. It is the holder's local view; the store's is the one that counts.
func (l Lease) Valid(now time.Time) bool { return l.Token != 0 && now.Before(l.Expires) }

// Errors of lease stores; test for them with errors.Is.
var (
	// ErrLeaseHeld reports an Acquire of a key another holder leases.
	ErrLeaseHeld = errors.New("warmpool: lease held by another holder")
	// ErrLeaseLost reports an operation with a lease that expired, was
	// released, or whose key changed hands since (the token differs).
	ErrLeaseLost = errors.New("warmpool: lease lost")
	// ErrClaimed reports an Acquire of a key whose live lease is claimed:
	// its pod was handed to a function and is no longer a pool's.
	ErrClaimed = errors.New("warmpool: pod claimed")
)

// LeaseStore grants leases on keys with fencing tokens. Every operation is
// a compare-and-set on the key's current lease, atomic in the store.
// Implementations: [MemLeaseStore] for one process; contrib/etcd and
// Kubernetes Leases for several. They must be safe for concurrent use; the
// conformance suite in package warmpool/leasetest states their semantics.
//
// A claimed lease (a pod handed to a function) lives as long as any other:
// its holder renews it, and when the holder dies the claim lapses with its
// other leases, so that the pod, now an orphaned instance, can be adopted
// and deleted by a live manager. A store may renew all the leases of one
// holder together (the etcd store keeps them on one etcd lease, so that a
// renewal is one request whatever the number of pods): a holder releases
// the leases it gives up instead of letting them lapse.
type LeaseStore interface {
	// Acquire grants key to holder for ttl when the key has no live lease,
	// with a token greater than every earlier token of the key. It fails
	// with ErrClaimed when the key's live lease is claimed, and with
	// ErrLeaseHeld when it is not, even when it is holder's own (a
	// restarted process must not inherit the leases of the incarnation it
	// replaces: they are renewed with Renew or left to expire).
	Acquire(ctx context.Context, key, holder string, ttl time.Duration) (Lease, error)
	// Renew extends each lease, claimed or not, if it is still the key's
	// live lease (same token, not expired), in one batch, through the
	// store handle that acquired it (a lease acquired through another
	// handle may come back lost). The new expiry is ttl from now, or the
	// TTL the store granted the lease with, for stores whose TTLs are fixed
	// at grant (etcd); Expires says which. It returns one Lease per input,
	// in order; a lease that could not be renewed comes back with Token 0.
	// The error reports a failure of the whole batch (the store
	// unreachable): nothing is known then, and the holder must treat its
	// leases as lapsing at the Expires it had.
	Renew(ctx context.Context, leases []Lease, ttl time.Duration) ([]Lease, error)
	// Release frees the key if l is its live lease (claimed or not);
	// otherwise it returns ErrLeaseLost and changes nothing.
	Release(ctx context.Context, l Lease) error
	// Claim marks the key as claimed if l is its live lease: the pod was
	// handed to a function, and no holder may acquire it while the claim
	// lives. Claiming a key already claimed with l's token succeeds
	// (retries are safe). Otherwise it returns ErrLeaseLost.
	Claim(ctx context.Context, l Lease) error
}

// Member is one live member of a [Membership]: a warm-pool manager, which
// for a Dataplane is also a dataplane node.
type Member struct {
	// ID names the member; it is stable across restarts (a node name), so
	// that a restarted member gets back the same shard of pods and of
	// functions. Leases are held in the name of an incarnation of it (see
	// [Manager.Holder]), so that a restart never inherits them.
	ID string
	// Addr is where the other members reach this one (a Dataplane node:
	// its gateway's host:port); empty for a member nobody needs to reach.
	Addr string
	// Weight is the member's share relative to the others (default 1).
	Weight float64
}

// Membership tracks the live members that share a pod population (and,
// for Dataplanes, the functions), through heartbeats with a time to live.
// Implementations: [MemLeaseStore] for one process, contrib/etcd and
// Kubernetes Leases for many. They must be safe for concurrent use; the
// conformance suite in package warmpool/leasetest states their semantics.
type Membership interface {
	// Heartbeat records m as live until ttl from now, with its metadata.
	Heartbeat(ctx context.Context, m Member, ttl time.Duration) error
	// Leave removes id at once (a graceful shutdown).
	Leave(ctx context.Context, id string) error
	// Members returns the live members, sorted by ID.
	Members(ctx context.Context) ([]Member, error)
}

// MembershipWatcher is implemented by memberships that push changes, so that
// members learn of a join or a death as it happens rather than at their
// next poll.
type MembershipWatcher interface {
	// Watch sends the live members (sorted by ID) at once, then again after
	// every change, until ctx is done or the store fails; it then closes
	// the channel (a consumer that falls behind may miss intermediate
	// sets, never the latest).
	Watch(ctx context.Context) (<-chan []Member, error)
}

// soloMembership is the membership of a Manager alone.
type soloMembership struct{ self Member }

func (s soloMembership) Heartbeat(context.Context, Member, time.Duration) error { return nil }
func (s soloMembership) Leave(context.Context, string) error                    { return nil }
func (s soloMembership) Members(context.Context) ([]Member, error)              { return []Member{s.self}, nil }
