package faas

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/sharding"
	"github.com/faasplane/faas/warmpool"
)

// ClusterNode is one dataplane node of a multi-node deployment.
type ClusterNode struct {
	// ID names the node; the node's own Config.NodeID.
	ID string
	// Addr is the host:port of the node's gateway, where other nodes
	// forward the requests it owns.
	Addr string
	// Weight is the node's share of functions relative to the others
	// (default 1).
	Weight float64
}

// ClusterConfig makes a Dataplane one node of several that share the
// functions and, with a membership, one pod population.
//
// Every function is owned by one node, chosen by weighted rendezvous
// hashing of its ID among the live nodes (package sharding), so that its
// counters, its queue, its limits and its instances live in one place; a
// request that arrives at another node is forwarded to the owner once
// (marked with X-Faas-Forwarded-By, so it is never forwarded again). When
// the owner cannot be reached, the request goes to the next node of the
// function's rendezvous order (its successor, which is also where the
// function moves if the owner leaves), so the function still has one home;
// the unreachable node is passed over for SuspectTimeout, doubling while it
// keeps refusing, and the membership removes it for good once its
// heartbeat lapses. Deploy every function on every node.
//
// Two forms: a static list of Nodes, for simple setups where each node has
// pods of its own; or a Membership with a shared lease store, for nodes
// over one pod population (contrib/etcd, contrib/kubernetes). Then the node
// joins the membership through its warm pool's heartbeats (with Advertise
// and Weight), the warm pools shard the pods by the same membership, and
// the Dataplane follows the membership's changes. When the membership
// cannot be read, the node keeps the last view it had (fail static).
type ClusterConfig struct {
	// Nodes is a static list of the nodes, this one included. It cannot be
	// combined with Membership. [Dataplane.SetCluster] replaces it.
	Nodes []ClusterNode
	// Membership tracks the live nodes. It must be shared by every node,
	// and comes with Leases and Advertise.
	Membership warmpool.Membership
	// Leases arbitrates the shared pod population between the nodes' warm
	// pools: they claim a pod with a fencing token before handing it out.
	Leases warmpool.LeaseStore
	// Advertise is the host:port where the other nodes reach this node's
	// gateway, published with its heartbeats.
	Advertise string
	// Weight is this node's share of functions and of pods relative to
	// the others (default 1).
	Weight float64
	// SuspectTimeout is how long a node that refused a connection is
	// passed over before it is tried again; it doubles while the node
	// keeps refusing, up to 32 times. Default 1 s.
	SuspectTimeout time.Duration
	// Transport carries the forwarded requests to the other nodes'
	// gateways. Default: an http.Transport of its own with keep-alive,
	// apart from the agents' (Agents.Transport), so that the connections
	// to a node that failed can be dropped at once without touching the
	// agents'.
	Transport http.RoundTripper
}

// DefaultSuspectTimeout is the default of ClusterConfig.SuspectTimeout.
const DefaultSuspectTimeout = time.Second

func (c ClusterConfig) validate(nodeID string) error {
	switch {
	case c.Membership != nil && len(c.Nodes) > 0:
		return errors.New("cluster: Nodes and Membership are exclusive")
	case (c.Membership == nil) != (c.Leases == nil):
		return errors.New("cluster: Membership and Leases go together (nodes that share a membership share their pods)")
	case c.Membership != nil && c.Advertise == "":
		return errors.New("cluster: Advertise (this node's gateway host:port) is required with a Membership")
	case c.Weight < 0 || c.SuspectTimeout < 0:
		return errors.New("cluster: Weight and SuspectTimeout must not be negative")
	}
	if len(c.Nodes) > 0 {
		_, err := newCluster(c.Nodes, nodeID)
		return err
	}
	return nil
}

// cluster is an immutable view of the nodes: who owns which function.
type cluster struct {
	table *sharding.Table
	addrs map[string]string
}

// ErrUnknownNode reports a cluster that does not contain this node.
var ErrUnknownNode = errors.New("faas: this node is not in the cluster")

// ErrMembership reports a SetCluster on a Dataplane whose membership
// decides the nodes.
var ErrMembership = errors.New("faas: the cluster follows a membership")

func newCluster(nodes []ClusterNode, self string) (*cluster, error) {
	members := make([]sharding.Node, len(nodes))
	addrs := make(map[string]string, len(nodes))
	found := false
	for i, n := range nodes {
		members[i] = sharding.Node{ID: n.ID, Weight: cmp.Or(n.Weight, 1)}
		if n.ID == self {
			found = true
		} else if n.Addr == "" {
			return nil, fmt.Errorf("%w: node %q has no address", ErrInvalidConfig, n.ID)
		}
		addrs[n.ID] = n.Addr
	}
	if !found {
		return nil, fmt.Errorf("%w: %q", ErrUnknownNode, self)
	}
	table, err := sharding.New(members...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &cluster{table: table, addrs: addrs}, nil
}

// SetCluster replaces the static list of the nodes that share the
// functions, this one included (see [ClusterConfig]); only the functions of
// the nodes that joined or left move. An empty list makes this node alone.
// It is safe to call at any time, and fails with ErrMembership when
// Config.Cluster has a Membership.
func (d *Dataplane) SetCluster(nodes []ClusterNode) error {
	if d.cfg.Cluster.Membership != nil {
		return ErrMembership
	}
	return d.setNodes(nodes)
}

func (d *Dataplane) setNodes(nodes []ClusterNode) error {
	if len(nodes) == 0 {
		d.cluster.Store(nil)
		return nil
	}
	c, err := newCluster(nodes, d.cfg.NodeID)
	if err != nil {
		return err
	}
	old := d.cluster.Swap(c)
	if old != nil {
		for id, addr := range old.addrs {
			if c.addrs[id] != addr {
				d.suspects.clear(id) // gone for good, or back elsewhere: a fresh start
			}
		}
	}
	return nil
}

// Owner returns the node that owns the function and its gateway address;
// ok is false without a cluster (every function is local).
func (d *Dataplane) Owner(functionID string) (node, addr string, ok bool) {
	c := d.cluster.Load()
	if c == nil {
		return "", "", false
	}
	n, _ := c.table.Pick(functionID)
	return n.ID, c.addrs[n.ID], true
}

// Nodes returns the nodes of the cluster as this node sees them now,
// sorted by ID; nil without a cluster.
func (d *Dataplane) Nodes() []ClusterNode {
	c := d.cluster.Load()
	if c == nil {
		return nil
	}
	out := make([]ClusterNode, 0, c.table.Len())
	for _, n := range c.table.Nodes() {
		out = append(out, ClusterNode{ID: n.ID, Addr: c.addrs[n.ID], Weight: n.Weight})
	}
	return out
}

// peer is a node a request may be forwarded to.
type peer struct{ id, addr string }

// forwardTargets returns the nodes to try, in order, before serving the
// function here: the nodes ahead of this one in the function's rendezvous
// order, without the suspects. It is empty when this node owns the
// function, when there is no cluster, and for a request already forwarded
// (forwardedBy set), which is never forwarded again.
func (d *Dataplane) forwardTargets(functionID, forwardedBy string, dst []peer) []peer {
	c := d.cluster.Load()
	if c == nil || forwardedBy != "" {
		return dst
	}
	var buf [8]sharding.Node
	order := c.table.Rank(functionID, c.table.Len(), buf[:0])
	now := time.Time{}
	for _, n := range order {
		if n.ID == d.cfg.NodeID {
			break
		}
		if d.suspects.any() {
			if now.IsZero() {
				now = d.clock.Now()
			}
			if d.suspects.is(n.ID, now) {
				d.fwd.passedOver.Add(1)
				continue
			}
		}
		dst = append(dst, peer{n.ID, c.addrs[n.ID]})
	}
	return dst
}

// forwardStats count the requests forwarded to another node, those that
// found a node unreachable (or passed over a suspect one) and went on down
// the function's rendezvous order, and the passes over suspects.
type forwardStats struct {
	forwarded, failovers, passedOver atomic.Uint64
}

// suspects are the nodes that refused a connection recently.
type suspects struct {
	initial time.Duration
	n       atomic.Int32 // len(m), read without the lock on the hot path
	mu      sync.Mutex
	m       map[string]suspect
}

type suspect struct {
	until   time.Time
	backoff time.Duration
}

func newSuspects(initial time.Duration) *suspects {
	return &suspects{initial: initial, m: make(map[string]suspect)}
}

func (s *suspects) any() bool { return s.n.Load() > 0 }

// is reports whether id is suspect at now. Once its window ends it is
// tried again; the entry stays so that a new refusal doubles the window.
func (s *suspects) is(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	return ok && now.Before(e.until)
}

// mark records a refusal by id at now and returns how long it is passed
// over.
func (s *suspects) mark(id string, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	switch {
	case !ok:
		e.backoff = s.initial
	case !now.Before(e.until):
		e.backoff = min(2*e.backoff, 32*s.initial) // refused again after its window
	default:
		return e.until.Sub(now) // concurrent refusals of one outage count once
	}
	e.until = now.Add(e.backoff)
	s.m[id] = e
	s.n.Store(int32(len(s.m)))
	return e.backoff
}

// clear forgets id: it answered, or the membership replaced it.
func (s *suspects) clear(id string) {
	if !s.any() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	s.n.Store(int32(len(s.m)))
}

// unreachable records that p refused a connection (failover) or broke one
// off (a request that may have run there): p is passed over for a while,
// and the idle connections to the nodes are dropped, since those to p are
// dead and a request sent on one could not tell whether p read it.
func (d *Dataplane) unreachable(p peer, err error, failover bool) {
	if failover {
		d.fwd.failovers.Add(1)
	}
	if c, ok := d.cfg.Cluster.Transport.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	if w := d.suspects.mark(p.id, d.clock.Now()); w > 0 {
		d.log.Warn("node unreachable; passing it over", "node", p.id, "addr", p.addr, "for", w, "err", err)
	}
}

// followMembership keeps the cluster in step with the membership until the
// Dataplane stops: pushed changes when it is a MembershipWatcher, otherwise
// a poll every warm-pool round. When the membership cannot be read the last
// view stays (fail static), and the node always counts itself in.
func (d *Dataplane) followMembership(m warmpool.Membership) {
	every := d.cfg.Pool.RenewInterval
	if w, ok := m.(warmpool.MembershipWatcher); ok {
		retry := time.Second
		for d.ctx.Err() == nil {
			ch, err := w.Watch(d.ctx)
			if err == nil {
				retry = time.Second
				for members := range ch {
					d.applyMembers(members)
				}
			} else if d.ctx.Err() == nil {
				d.log.Warn("watching the membership failed; keeping the last view", "err", err)
			}
			if clock.Sleep(d.ctx, d.clock, retry) != nil {
				return
			}
			retry = min(2*retry, every)
		}
		return
	}
	t := d.clock.NewTicker(every)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(d.ctx, every)
		members, err := m.Members(ctx)
		cancel()
		if err == nil {
			d.applyMembers(members)
		} else if d.ctx.Err() == nil {
			d.log.Warn("reading the membership failed; keeping the last view", "err", err)
		}
		select {
		case <-d.ctx.Done():
			return
		case <-t.C():
		}
	}
}

// applyMembers makes members (plus this node) the cluster.
func (d *Dataplane) applyMembers(members []warmpool.Member) {
	nodes := make([]ClusterNode, 0, len(members)+1)
	self := false
	for _, m := range members {
		switch {
		case m.ID == d.cfg.NodeID:
			self = true
		case m.Addr == "":
			continue // a warm-pool manager that is no dataplane: it owns pods, not functions
		}
		nodes = append(nodes, ClusterNode{ID: m.ID, Addr: m.Addr, Weight: m.Weight})
	}
	if !self {
		nodes = append(nodes, ClusterNode{ID: d.cfg.NodeID, Addr: d.cfg.Cluster.Advertise, Weight: d.cfg.Cluster.Weight})
	}
	slices.SortFunc(nodes, func(a, b ClusterNode) int { return strings.Compare(a.ID, b.ID) })
	if err := d.setNodes(nodes); err != nil {
		d.log.Warn("membership ignored", "err", err)
		return
	}
	d.log.Info("cluster membership", "nodes", len(nodes))
}
