package health

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/lifecycle"
)

// DefaultHeartbeat is the default interval of a publisher's heartbeats.
const DefaultHeartbeat = time.Second

// ErrInvalidConfig is wrapped by the configuration errors of the package's
// constructors.
var ErrInvalidConfig = errors.New("health: invalid config")

// PublisherConfig configures a [Publisher].
type PublisherConfig struct {
	// Conn is the connection to publish on; the caller owns it. Required.
	Conn *nats.Conn
	// Node is the host whose pods the publisher reports ([ValidName]).
	// Required.
	Node string
	// Prefix is the subjects' prefix. Default DefaultPrefix.
	Prefix string
	// Heartbeat is the interval of heartbeats. Default 1 s.
	Heartbeat time.Duration
	// Clock times the heartbeats and stamps the messages. Default: the
	// system clock.
	Clock clock.Clock
	// Logger receives publication failures at warn level. Default:
	// discard.
	Logger *slog.Logger
}

// Publisher is the host side of the protocol: it holds the host's current
// verdict on each of its pods, publishes the verdicts that change at once
// ([Publisher.Update]), and, while [Publisher.Run] runs, sends heartbeats
// and answers sync requests with a snapshot. It is safe for concurrent
// use.
type Publisher struct {
	cfg     PublisherConfig
	subj    Subjects
	log     *slog.Logger
	epoch   string
	started int64

	mu   sync.Mutex // orders the messages: seq and pods change with them
	pods map[string]PodStatus
	seq  uint64

	changes, heartbeats, snapshots, failures atomic.Uint64
}

// PublisherStats counts a publisher's messages.
type PublisherStats struct {
	// Changes, Heartbeats and Snapshots count the messages sent of each
	// kind; Failures the messages that could not be sent.
	Changes, Heartbeats, Snapshots, Failures uint64
}

// NewPublisher validates cfg and returns a publisher with no pods.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Conn == nil {
		return nil, fmt.Errorf("%w: Conn is required", ErrInvalidConfig)
	}
	if !ValidName(cfg.Node) {
		return nil, fmt.Errorf("%w: Node %q must be 1 to %d bytes of printable ASCII without spaces", ErrInvalidConfig, clip(cfg.Node), MaxNameLen)
	}
	if cfg.Heartbeat < 0 {
		return nil, fmt.Errorf("%w: Heartbeat must not be negative", ErrInvalidConfig)
	}
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, DefaultHeartbeat)
	subj, err := NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cfg.Clock = clock.Or(cfg.Clock)
	p := &Publisher{cfg: cfg, subj: subj, log: cfg.Logger, epoch: rand.Text(), started: cfg.Clock.Now().UnixNano(), pods: map[string]PodStatus{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// Node returns the publisher's node.
func (p *Publisher) Node() string { return p.cfg.Node }

// Update records the verdicts of statuses and publishes, in one message,
// those that differ from the pods' previous verdicts (a pod not seen
// before counts as up). A verdict that did not change is not sent again;
// heartbeats repeat the pods that are not up. It returns an error, and
// records nothing, when a pod name or state is invalid; it returns an
// error when the message could not be published (the verdicts are
// recorded, and the next heartbeat carries them).
func (p *Publisher) Update(statuses ...PodStatus) error {
	for _, st := range statuses {
		if !ValidName(st.Pod) || !st.State.Valid() {
			return fmt.Errorf("health: update: invalid pod %q or state %q", clip(st.Pod), clip(string(st.State)))
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var changed []PodStatus
	for _, st := range statuses {
		if lifecycle.ValidFunctionID(st.Function) != nil {
			st.Function = ""
		}
		st.Reason = cutReason(st.Reason)
		prev, seen := p.pods[st.Pod]
		p.pods[st.Pod] = st
		if prev.State == st.State || !seen && st.State == StateUp {
			continue
		}
		changed = append(changed, st)
	}
	var errs []error
	for chunk := range slices.Chunk(changed, MaxPods) {
		p.seq++
		if err := p.publishLocked(p.subj.Node(p.cfg.Node), KindChange, chunk); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Forget drops pods that left the host. No message says so: the next
// heartbeat no longer lists them.
func (p *Publisher) Forget(pods ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range pods {
		delete(p.pods, id)
	}
}

// Pods returns the current verdicts, sorted by pod.
func (p *Publisher) Pods() []PodStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.SortedFunc(maps.Values(p.pods), func(a, b PodStatus) int { return strings.Compare(a.Pod, b.Pod) })
}

// Stats returns the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	return PublisherStats{Changes: p.changes.Load(), Heartbeats: p.heartbeats.Load(), Snapshots: p.snapshots.Load(), Failures: p.failures.Load()}
}

// Heartbeat publishes a heartbeat now. Run calls it every interval.
func (p *Publisher) Heartbeat() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.publishLocked(p.subj.Node(p.cfg.Node), KindHeartbeat, p.notUpLocked())
}

// Run sends a heartbeat at once and then every interval, and answers the
// sync requests on Subjects.Sync and Subjects.SyncNode with a snapshot,
// until ctx is done; then it returns ctx.Err(). It returns early with an
// error when it cannot subscribe, or when the connection closes.
func (p *Publisher) Run(ctx context.Context) error {
	nc := p.cfg.Conn
	reqs := make(chan *nats.Msg, 64)
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for _, subj := range []string{p.subj.Sync(), p.subj.SyncNode(p.cfg.Node)} {
		s, err := nc.ChanSubscribe(subj, reqs)
		if err != nil {
			return fmt.Errorf("health: subscribe %s: %w", subj, err)
		}
		subs = append(subs, s)
	}
	closed := nc.StatusChanged(nats.CLOSED)
	defer nc.RemoveStatusListener(closed)
	if nc.IsClosed() {
		return fmt.Errorf("health: publisher: %w", nats.ErrConnectionClosed)
	}
	t := p.cfg.Clock.NewTicker(p.cfg.Heartbeat)
	defer t.Stop()
	p.beat()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-closed:
			return fmt.Errorf("health: publisher: %w", nats.ErrConnectionClosed)
		case <-t.C():
			p.beat()
		case req := <-reqs:
			if req.Reply == "" {
				continue
			}
			p.mu.Lock()
			err := p.publishLocked(req.Reply, KindSnapshot, p.notUpLocked())
			p.mu.Unlock()
			if err != nil {
				p.log.Warn("health: answering a sync request failed", "node", p.cfg.Node, "err", err)
			}
		}
	}
}

func (p *Publisher) beat() {
	if err := p.Heartbeat(); err != nil {
		p.log.Warn("health: heartbeat failed", "node", p.cfg.Node, "err", err)
	}
}

// notUpLocked returns the pods a heartbeat lists, sorted; p.mu held.
func (p *Publisher) notUpLocked() []PodStatus {
	var out []PodStatus
	for _, st := range p.pods {
		if st.State != StateUp {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b PodStatus) int { return strings.Compare(a.Pod, b.Pod) })
	return out
}

// publishLocked sends one message; p.mu held, so that messages leave in
// the order of their sequence numbers.
func (p *Publisher) publishLocked(subject string, kind Kind, pods []PodStatus) error {
	m := &Message{
		Version: WireVersion, Kind: kind, Node: p.cfg.Node, Epoch: p.epoch, StartedUnixNano: max(p.started, 0), Seq: p.seq,
		SentUnixNano: p.cfg.Clock.Now().UnixNano(), HeartbeatMillis: p.cfg.Heartbeat.Milliseconds(), Pods: pods,
	}
	b, err := Encode(m)
	if limit := p.cfg.Conn.MaxPayload(); err == nil && limit > 0 && int64(len(b)) > limit {
		// Reasons are most of a large message and the least of its worth.
		slim := slices.Clone(pods)
		for i := range slim {
			slim[i].Reason = ""
		}
		m.Pods = slim
		if b, err = Encode(m); err == nil && int64(len(b)) > limit {
			err = fmt.Errorf("health: a %s of %d pods takes %d bytes, more than the server's max_payload %d", kind, len(pods), len(b), limit)
		}
	}
	if err == nil {
		err = p.cfg.Conn.Publish(subject, b)
	}
	if err != nil {
		p.failures.Add(1)
		return fmt.Errorf("health: publish %s: %w", kind, err)
	}
	switch kind {
	case KindChange:
		p.changes.Add(1)
	case KindHeartbeat:
		p.heartbeats.Add(1)
	default:
		p.snapshots.Add(1)
	}
	return nil
}
