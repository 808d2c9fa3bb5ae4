package prometheus

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/lifecycle"
)

// AgentStatser reads an agent's statistics over its control protocol
// (GET /v1/stats); *lifecycle.Client is one.
type AgentStatser interface {
	Stats(ctx context.Context, ctl lifecycle.Control) (lifecycle.Stats, error)
}

// AgentConfig configures [NewAgentCollector].
type AgentConfig struct {
	// Client asks the agents. Default: a lifecycle.Client with its
	// defaults.
	Client AgentStatser
	// MaxAgents bounds the agents asked per scrape; the others keep the
	// figures of their last scrape. Default 512.
	MaxAgents int
	// Parallel bounds the agents asked at once. Default 16.
	Parallel int
	// Timeout bounds one scrape of all agents. Default 5 s.
	Timeout time.Duration
}

// AgentCollector is a prometheus.Collector of the agents' own statistics,
// summed per function: at each scrape it asks the agent of every instance
// in the Dataplane's routes (over the control listener, with the pod's
// token), and it keeps the counters of instances that went away, so that
// a function's counters never go down while its instances come and go.
type AgentCollector struct {
	dp     *faas.Dataplane
	cfg    AgentConfig
	labels *labeler
	d      agentDescs

	mu      sync.Mutex           // serializes scrapes and guards the fields below
	live    map[string]agentSeen // instance ID → what it said last
	retired map[string]*agentTotals
	errs    float64
}

type agentDescs struct {
	instances, inFlight, requests, billed, kills, logLines, scrapeErrors, scrapeSeconds *prom.Desc
}

// agentSeen is an instance's last answer.
type agentSeen struct {
	label string
	st    lifecycle.Stats
}

// agentTotals are the counters of the instances of one function label.
type agentTotals struct {
	completed, failed, rejected, billedMillis, kills, lines, dropped, truncated float64
}

func (t *agentTotals) add(st lifecycle.Stats) {
	t.completed += float64(st.Completed)
	t.failed += float64(st.Failed)
	t.rejected += float64(st.Rejected)
	t.billedMillis += float64(st.BilledMillis)
	t.kills += float64(st.MemoryLimitKills)
	t.lines += float64(st.LogLines)
	t.dropped += float64(st.LogLinesDropped)
	t.truncated += float64(st.LogLinesTruncated)
}

// NewAgentCollector returns the collector of dp's agents. It shares m's
// function labels (m may be nil).
func NewAgentCollector(dp *faas.Dataplane, m *Metrics, cfg AgentConfig) (*AgentCollector, error) {
	if cfg.MaxAgents < 0 || cfg.Parallel < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: AgentConfig fields must not be negative", ErrInvalidConfig)
	}
	if cfg.Client == nil {
		c, err := lifecycle.NewClient(lifecycle.ClientConfig{})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		cfg.Client = c
	}
	cfg.MaxAgents = cmpOr(cfg.MaxAgents, 512)
	cfg.Parallel = cmpOr(cfg.Parallel, 16)
	cfg.Timeout = cmpOr(cfg.Timeout, 5*time.Second)
	ns, labels := defaultNamespace, newLabeler(defaultMaxFunctions)
	if m != nil {
		ns, labels = m.cfg.Namespace, m.labels
	}
	d := func(name, help string, labels ...string) *prom.Desc {
		return prom.NewDesc(prom.BuildFQName(ns, "agents", name), help, labels, nil)
	}
	return &AgentCollector{dp: dp, cfg: cfg, labels: labels, live: map[string]agentSeen{}, retired: map[string]*agentTotals{},
		d: agentDescs{
			instances:     d("instances", "Instances whose agent answered the last scrape.", "function"),
			inFlight:      d("in_flight_requests", "Invocations in flight on the agents.", "function"),
			requests:      d("requests_total", "Invocations as the agents counted them: completed (reached the function), failed (of those, no answer, a 5xx or aborted), rejected (refused before the function).", "function", "result"),
			billed:        d("billed_seconds_total", "Billed time the agents measured (each invocation rounded up to a millisecond).", "function"),
			kills:         d("memory_limit_kills_total", "Function processes ended for exceeding their memory limit.", "function"),
			logLines:      d("log_lines_total", "Lines of function output by fate (written to the log sink, dropped by the rate limit, truncated).", "function", "result"),
			scrapeErrors:  d("scrape_errors_total", "Agents that did not answer a scrape.", nil...),
			scrapeSeconds: d("scrape_duration_seconds", "Duration of the last scrape of the agents.", nil...),
		}}, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Describe implements prometheus.Collector.
func (a *AgentCollector) Describe(ch chan<- *prom.Desc) {
	d := a.d
	for _, x := range []*prom.Desc{d.instances, d.inFlight, d.requests, d.billed, d.kills, d.logLines, d.scrapeErrors, d.scrapeSeconds} {
		ch <- x
	}
}

type agentTarget struct {
	id, label string
	ctl       lifecycle.Control
}

// targets lists the instances in the Dataplane's routes, up to MaxAgents,
// and the IDs of all of them.
func (a *AgentCollector) targets() ([]agentTarget, map[string]bool) {
	var out []agentTarget
	all := map[string]bool{}
	for _, fn := range a.dp.Functions() {
		for _, ri := range a.dp.Routes(fn) {
			all[ri.Instance.ID] = true
			if len(out) < a.cfg.MaxAgents {
				out = append(out, agentTarget{id: ri.Instance.ID, label: a.labels.label(fn), ctl: ri.Instance.Control})
			}
		}
	}
	return out, all
}

type agentAnswer struct {
	t   agentTarget
	st  lifecycle.Stats
	err error
}

// scrape asks every target, Parallel at a time, within Timeout.
func (a *AgentCollector) scrape(targets []agentTarget) []agentAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Timeout)
	defer cancel()
	answers := make([]agentAnswer, len(targets))
	sem := make(chan struct{}, a.cfg.Parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			st, err := a.cfg.Client.Stats(ctx, t.ctl)
			answers[i] = agentAnswer{t: t, st: st, err: err}
		})
	}
	wg.Wait()
	return answers
}

// Collect implements prometheus.Collector.
func (a *AgentCollector) Collect(ch chan<- prom.Metric) {
	began := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	targets, routed := a.targets()
	totals, answered, inFlight := a.update(a.scrape(targets), routed)
	labels := make([]string, 0, len(totals))
	for l := range totals {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	d := a.d
	for _, l := range labels {
		t := totals[l]
		ch <- prom.MustNewConstMetric(d.instances, prom.GaugeValue, answered[l], l)
		ch <- prom.MustNewConstMetric(d.inFlight, prom.GaugeValue, inFlight[l], l)
		ch <- prom.MustNewConstMetric(d.requests, prom.CounterValue, t.completed, l, "completed")
		ch <- prom.MustNewConstMetric(d.requests, prom.CounterValue, t.failed, l, "failed")
		ch <- prom.MustNewConstMetric(d.requests, prom.CounterValue, t.rejected, l, "rejected")
		ch <- prom.MustNewConstMetric(d.billed, prom.CounterValue, t.billedMillis/1000, l)
		ch <- prom.MustNewConstMetric(d.kills, prom.CounterValue, t.kills, l)
		ch <- prom.MustNewConstMetric(d.logLines, prom.CounterValue, t.lines, l, "written")
		ch <- prom.MustNewConstMetric(d.logLines, prom.CounterValue, t.dropped, l, "dropped")
		ch <- prom.MustNewConstMetric(d.logLines, prom.CounterValue, t.truncated, l, "truncated")
	}
	ch <- prom.MustNewConstMetric(d.scrapeErrors, prom.CounterValue, a.errs)
	ch <- prom.MustNewConstMetric(d.scrapeSeconds, prom.GaugeValue, time.Since(began).Seconds())
}

// update folds a scrape's answers into what the collector knows (under
// a.mu): an instance that answered replaces its last figures, one that did
// not keeps them, one gone from the routes (not in routed) moves its last
// figures to its function's retired totals. It returns the totals per
// label, and the instances that answered and their in-flight requests.
func (a *AgentCollector) update(answers []agentAnswer, routed map[string]bool) (totals map[string]*agentTotals, answered, inFlight map[string]float64) {
	answered, inFlight = map[string]float64{}, map[string]float64{}
	for _, ans := range answers {
		if ans.err != nil {
			a.errs++
			continue // keeps its last figures
		}
		a.live[ans.t.id] = agentSeen{label: ans.t.label, st: ans.st}
		answered[ans.t.label]++
		inFlight[ans.t.label] += float64(ans.st.InFlight)
	}
	for id, seen := range a.live {
		if !routed[id] { // gone from the routes: its counts stay
			a.retiredOf(seen.label).add(seen.st)
			delete(a.live, id)
		}
	}
	totals = map[string]*agentTotals{}
	for l, t := range a.retired {
		c := *t
		totals[l] = &c
	}
	for _, seen := range a.live {
		t := totals[seen.label]
		if t == nil {
			t = &agentTotals{}
			totals[seen.label] = t
		}
		t.add(seen.st)
	}
	return totals, answered, inFlight
}

func (a *AgentCollector) retiredOf(label string) *agentTotals {
	t := a.retired[label]
	if t == nil {
		t = &agentTotals{}
		a.retired[label] = t
	}
	return t
}
