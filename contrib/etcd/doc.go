// Package etcd shares a pod population among the warm-pool managers of
// several processes through etcd: [Store] is a [warmpool.LeaseStore], so
// that each pod is leased to one manager at a time and handed out at most
// once, and a [warmpool.Membership] with a [warmpool.MembershipWatcher],
// so that the managers (and the dataplane nodes they belong to) know who
// is alive. It passes the conformance suite of package warmpool/leasetest.
//
// Every key lives under Config.Prefix. A pod's lease is the key
// Prefix+"pods/"+podID, whose value names its holder and whether the pod
// was claimed (handed to a function); its fencing token is the key's etcd
// create revision, which grows every time the key is created, that is
// every time it changes hands, and stays the same when it is claimed.
// Acquire creates the key in a transaction only if it does not exist;
// Claim and Release are transactions guarded by the token, so that a
// holder that lost its lease (paused, partitioned) can do nothing with it.
// All the keys of one holder live on one etcd lease: a Renew of any number
// of pods is one keep-alive request, and when that etcd lease is lost
// (its holder died, or could not renew it within its TTL) every lease of
// the holder is lost at once. Nothing renews in the background: the
// Manager's upkeep round is the keep-alive, so a manager that stops (a
// crash, a long pause) loses its pods within one TTL, and another adopts
// them. A member is the key Prefix+"members/"+ID, with its address and
// weight, on an etcd lease of its own: it disappears when the member
// leaves (Leave revokes the lease) or stops heartbeating for a TTL.
//
// etcd grants TTLs in whole seconds (ttl is rounded up) with a minimum of
// 1.5 election timeouts (2 s with etcd's defaults). Every call's requests
// are bounded by Config.RequestTimeout, so that an etcd outage makes the
// calls fail fast, not hang: the managers then hand out no pod whose lease
// they cannot prove, and carry on when etcd answers again, without being
// recreated. etcd extends every lease by its full TTL when a member becomes
// leader, so the leases of a restarted etcd survive it. Give clients a short
// reconnection backoff ([ReconnectBackoff]; gRPC's default grows to two
// minutes), or they notice a restarted etcd seconds after it is back. The Store does not own its client: close the
// Store, then the client.
package etcd
