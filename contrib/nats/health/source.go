package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/router"
)

// SourceConfig configures a [Source].
type SourceConfig struct {
	// Conn is the connection to subscribe on; the caller owns it.
	// Required.
	Conn *nats.Conn
	// Prefix is the subjects' prefix. Default DefaultPrefix.
	Prefix string
	// StaleAfter is how long a host may stay silent (no change, heartbeat
	// or snapshot) before its reports are stale: its "down" verdicts are
	// then undone, and the dataplane's own pull checks alone decide for
	// its instances. Zero means 3 of the host's heartbeat intervals (as it
	// announces them; 3 s before it announced any).
	StaleAfter time.Duration
	// InstanceID names the dataplane's instance that runs in a pod. The
	// default, [DefaultInstanceID], is the naming of package coldstart.
	InstanceID func(node, pod string) string
	// Buffer bounds the messages received and not yet applied; beyond it
	// NATS drops messages (a slow consumer), which the next heartbeat
	// repairs. Default 4096.
	Buffer int
	// Clock times staleness. Default: the system clock.
	Clock clock.Clock
	// Logger receives malformed messages at debug level and hosts turning
	// stale or fresh at warn and info level. Default: discard.
	Logger *slog.Logger
}

// DefaultInstanceID is the ID the dataplane gives the instance that runs in
// pod: "i-" followed by the pod's ID (package coldstart names instances so).
func DefaultInstanceID(node, pod string) string { return coldstart.InstanceID(pod) }

// Source is the dataplane side of the protocol: a router.HealthSource that
// subscribes to every host's publications and turns them into reports,
// asks the hosts for a snapshot whenever it (re)subscribes or reconnects
// or notices a lost change, and undoes the "down" verdicts of a host that
// went silent. Configure it as faas.Config.Health.Source (or
// router.HealthConfig.Source). One Watch runs at a time.
type Source struct {
	cfg  SourceConfig
	subj Subjects
	log  *slog.Logger

	watching atomic.Bool

	// hosts is the state of the reports: each host's latest verdicts (the
	// pods not up) and where its sequence stands. It is touched by Watch's
	// goroutine only; mu guards it for Hosts.
	mu    sync.Mutex
	hosts map[string]*host

	received, malformed, resyncs, stale atomic.Uint64
}

// host is what a Source holds of one host.
type host struct {
	epoch    string
	started  int64
	seq      uint64
	seen     time.Time
	interval time.Duration
	pods     map[string]PodStatus // the pods reported not up
}

// SourceStats counts what a Source received and did.
type SourceStats struct {
	// Received counts the messages applied or judged; Malformed those
	// refused.
	Received, Malformed uint64
	// Resyncs counts the snapshot requests sent.
	Resyncs uint64
	// StaleHosts counts the times a host went stale.
	StaleHosts uint64
}

// HostStatus is a Source's view of one host.
type HostStatus struct {
	Node string
	// LastSeen is when its latest message arrived (the Source's clock).
	LastSeen time.Time
	// NotUp is the number of its pods it reports not up.
	NotUp int
}

// NewSource validates cfg and returns a source.
func NewSource(cfg SourceConfig) (*Source, error) {
	if cfg.Conn == nil {
		return nil, fmt.Errorf("%w: Conn is required", ErrInvalidConfig)
	}
	if cfg.StaleAfter < 0 || cfg.Buffer < 0 {
		return nil, fmt.Errorf("%w: StaleAfter and Buffer must not be negative", ErrInvalidConfig)
	}
	subj, err := NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cfg.Buffer = cmp.Or(cfg.Buffer, 4096)
	if cfg.InstanceID == nil {
		cfg.InstanceID = DefaultInstanceID
	}
	cfg.Clock = clock.Or(cfg.Clock)
	s := &Source{cfg: cfg, subj: subj, log: cfg.Logger, hosts: map[string]*host{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// ErrWatching is returned by a Watch while another one runs.
var ErrWatching = errors.New("health: the source is already being watched")

// Watch implements router.HealthSource: it subscribes to the hosts'
// subjects, requests every host's snapshot, and applies what arrives
// until ctx is done (it returns ctx.Err()) or the connection closes. When
// it fails, it first undoes the "down" verdicts it reported, since nothing
// will keep them true any more.
func (s *Source) Watch(ctx context.Context, report func(router.HealthReport)) error {
	if !s.watching.CompareAndSwap(false, true) {
		return ErrWatching
	}
	defer s.watching.Store(false)
	err := s.watch(ctx, report)
	if ctx.Err() == nil {
		s.forgetAll(report, "health push stopped: "+err.Error())
	}
	return err
}

func (s *Source) watch(ctx context.Context, report func(router.HealthReport)) error {
	nc := s.cfg.Conn
	msgs := make(chan *nats.Msg, s.cfg.Buffer)
	inbox := nc.NewInbox()
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	for _, subj := range []string{s.subj.AllNodes(), inbox} {
		sub, err := nc.ChanSubscribe(subj, msgs)
		if err != nil {
			return fmt.Errorf("health: subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	status := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(status)
	if nc.IsClosed() {
		return fmt.Errorf("health: source: %w", nats.ErrConnectionClosed)
	}
	// The subscriptions reach the server before the request does, so
	// that no change between the snapshot and them is missed.
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("health: source: %w", err)
	}
	s.resync(inbox, "")
	t := s.cfg.Clock.NewTicker(s.checkPeriod())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st := <-status:
			if st == nats.CLOSED {
				return fmt.Errorf("health: source: %w", nats.ErrConnectionClosed)
			}
			// Reconnected: what was published meanwhile is lost.
			s.resync(inbox, "")
		case m := <-msgs:
			s.apply(m, inbox, report)
		case <-t.C():
			// The clock's time, not the tick's: a tick may have waited.
			s.expire(s.cfg.Clock.Now(), report)
		}
	}
}

// checkPeriod is how often staleness is checked: a quarter of the
// shortest staleness, so that a host goes stale at most 25 % late.
func (s *Source) checkPeriod() time.Duration {
	if s.cfg.StaleAfter > 0 {
		return max(s.cfg.StaleAfter/4, time.Millisecond)
	}
	return 250 * time.Millisecond
}

// resync asks every host (node "") or one for a snapshot.
func (s *Source) resync(inbox, node string) {
	subj := s.subj.Sync()
	if node != "" {
		subj = s.subj.SyncNode(node)
	}
	s.resyncs.Add(1)
	if err := s.cfg.Conn.PublishRequest(subj, inbox, nil); err != nil {
		s.log.Warn("health: snapshot request failed", "subject", subj, "err", err)
	}
}

// apply judges one message and reports what it changes.
func (s *Source) apply(m *nats.Msg, inbox string, report func(router.HealthReport)) {
	if m.Subject == inbox && len(m.Data) == 0 {
		return // the server's "no responders" status: no host runs yet
	}
	msg, err := Decode(m.Data)
	if err == nil && m.Subject != inbox {
		// A host publishes on its own subject only: NATS permissions can
		// then keep one host from speaking for another.
		if node, ok := s.subj.NodeOf(m.Subject); !ok || node != msg.Node {
			err = fmt.Errorf("%w: node %q published on %s", ErrMalformed, msg.Node, m.Subject)
		}
	}
	if err != nil {
		s.malformed.Add(1)
		s.log.Debug("health: message refused", "subject", m.Subject, "err", err)
		return
	}
	s.received.Add(1)
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	h := s.hosts[msg.Node]
	fresh := h == nil
	if fresh {
		h = &host{pods: map[string]PodStatus{}}
		s.hosts[msg.Node] = h
	}
	newEpoch := msg.Epoch != h.epoch
	if newEpoch && !fresh && msg.StartedUnixNano < h.started {
		// From an earlier run of the host, delivered late. (A run whose
		// clock went back is ignored until the host, silent meanwhile,
		// goes stale and is forgotten.)
		s.mu.Unlock()
		return
	}
	h.seen = now
	if msg.HeartbeatMillis > 0 {
		h.interval = time.Duration(msg.HeartbeatMillis) * time.Millisecond
	}
	s.mu.Unlock()
	if fresh {
		s.log.Info("health: host reporting", "node", msg.Node)
	}
	if newEpoch {
		h.started = msg.StartedUnixNano
	}
	if msg.Kind == KindChange {
		switch {
		case !newEpoch && msg.Seq <= h.seq:
			return // a change a snapshot already had, or a duplicate
		case newEpoch || msg.Seq != h.seq+1:
			// The changes before this one are unknown: ask for them.
			s.resync(inbox, msg.Node)
		}
		h.epoch, h.seq = msg.Epoch, msg.Seq
		s.mu.Lock()
		for _, p := range msg.Pods {
			if p.State == StateUp {
				delete(h.pods, p.Pod)
			} else {
				h.pods[p.Pod] = p
			}
		}
		s.mu.Unlock()
		for _, p := range msg.Pods {
			report(s.reportOf(msg.Node, p))
		}
		return
	}
	if !newEpoch && msg.Seq < h.seq {
		return // older than changes applied since
	}
	h.epoch, h.seq = msg.Epoch, msg.Seq
	// The full list of pods not up: the others are up. Every verdict is
	// reported again, which the router ignores when nothing changed, so
	// that an instance added after a verdict still gets it.
	listed := make(map[string]PodStatus, len(msg.Pods))
	for _, p := range msg.Pods {
		listed[p.Pod] = p
	}
	s.mu.Lock()
	prev := h.pods
	h.pods = listed
	s.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(prev)) {
		if _, ok := listed[id]; !ok {
			report(s.reportOf(msg.Node, PodStatus{Pod: id, State: StateUp, Reason: "no longer reported down"}))
		}
	}
	for _, p := range msg.Pods {
		report(s.reportOf(msg.Node, p))
	}
}

// expire undoes the verdicts of the hosts silent for longer than their
// staleness bound.
func (s *Source) expire(now time.Time, report func(router.HealthReport)) {
	s.mu.Lock()
	var stale []string
	for node, h := range s.hosts {
		if now.Sub(h.seen) > s.staleAfter(h) {
			stale = append(stale, node)
		}
	}
	s.mu.Unlock()
	slices.Sort(stale)
	for _, node := range stale {
		s.stale.Add(1)
		s.mu.Lock()
		h := s.hosts[node]
		delete(s.hosts, node)
		s.mu.Unlock()
		s.log.Warn("health: host silent; its reports are stale, pull checks decide for its instances",
			"node", node, "last_seen", h.seen, "stale_after", s.staleAfter(h), "undone", len(h.pods))
		s.undo(node, h, report, "host "+node+" silent since "+h.seen.Format(time.RFC3339Nano))
	}
}

func (s *Source) staleAfter(h *host) time.Duration {
	if s.cfg.StaleAfter > 0 {
		return s.cfg.StaleAfter
	}
	if h.interval > 0 {
		return 3 * h.interval
	}
	return 3 * DefaultHeartbeat
}

// undo reports up every pod of h reported down: staleness is not death.
// Exited and reassigned instances were removed for good; nothing to undo.
func (s *Source) undo(node string, h *host, report func(router.HealthReport), why string) {
	for _, id := range slices.Sorted(maps.Keys(h.pods)) {
		if h.pods[id].State == StateDown {
			report(s.reportOf(node, PodStatus{Pod: id, State: StateUp, Reason: "stale: " + why}))
		}
	}
}

// forgetAll undoes every host's verdicts and forgets them.
func (s *Source) forgetAll(report func(router.HealthReport), why string) {
	s.mu.Lock()
	hosts := s.hosts
	s.hosts = map[string]*host{}
	s.mu.Unlock()
	for _, node := range slices.Sorted(maps.Keys(hosts)) {
		s.undo(node, hosts[node], report, why)
	}
}

func (s *Source) reportOf(node string, p PodStatus) router.HealthReport {
	return router.HealthReport{
		InstanceID: s.cfg.InstanceID(node, p.Pod),
		Healthy:    p.State == StateUp,
		Exited:     p.State == StateExited,
		Reassigned: p.State == StateReassigned,
		Reason:     "host " + node + ": " + cmp.Or(p.Reason, string(p.State)),
	}
}

// Stats returns the source's counters.
func (s *Source) Stats() SourceStats {
	return SourceStats{Received: s.received.Load(), Malformed: s.malformed.Load(), Resyncs: s.resyncs.Load(), StaleHosts: s.stale.Load()}
}

// Hosts returns the hosts whose reports count, sorted by node.
func (s *Source) Hosts() []HostStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]HostStatus, 0, len(s.hosts))
	for node, h := range s.hosts {
		out = append(out, HostStatus{Node: node, LastSeen: h.seen, NotUp: len(h.pods)})
	}
	slices.SortFunc(out, func(a, b HostStatus) int { return cmp.Compare(a.Node, b.Node) })
	return out
}
