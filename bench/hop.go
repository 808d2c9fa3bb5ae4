package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// Hop overhead: the same requests to the hello function directly, through a
// bare httputil.ReverseProxy chain of the dataplane's shape (gateway-like
// proxy in this process → agent-like proxy in its own process → function),
// and through faasplane (gateway in this process → agent process →
// function), in short slices that alternate between the three so that
// the noise of a shared machine hits them alike.

type hopParams struct {
	Rounds      int           `json:"rounds"`
	Slice       time.Duration `json:"slice_ns"`
	Concurrency []int         `json:"concurrency"`
	Rates       []float64     `json:"rates"`
}

type hopRound struct {
	P50us      float64        `json:"p50_us"`
	P99us      float64        `json:"p99_us"`
	Throughput float64        `json:"throughput"`
	OK         int            `json:"ok"`
	Errors     map[string]int `json:"errors,omitempty"`
}

type hopTarget struct {
	Name   string     `json:"name"`
	Rounds []hopRound `json:"rounds"`
	// P50, P99 and Throughput are the medians over rounds with their
	// range; Pooled summarizes every latency of every round.
	P50        Spread         `json:"p50_us"`
	P99        Spread         `json:"p99_us"`
	Throughput Spread         `json:"throughput"`
	Pooled     Latencies      `json:"pooled"`
	Errors     map[string]int `json:"errors,omitempty"`
}

type hopMode struct {
	Name        string      `json:"name"`
	Concurrency int         `json:"concurrency,omitempty"`
	Rate        float64     `json:"rate,omitempty"`
	Targets     []hopTarget `json:"targets"` // direct, bare-chain, faasplane
	// Ratio is (faasplane p50 − direct p50) / (bare p50 − direct p50)
	// per round: median and range. PooledRatio is the same on pooled
	// p50s; P99Ratio on the medians of the per-round p99s.
	Ratio       Spread  `json:"ratio"`
	PooledRatio float64 `json:"pooled_ratio"`
	P99Ratio    float64 `json:"p99_ratio"`
	// SendLateness is, for open-loop load, how late the sender sent
	// requests after their intended times (left out of the latencies).
	SendLateness *Latencies `json:"send_lateness,omitempty"`
}

type hopResult struct {
	Meta   Meta      `json:"meta"`
	Params hopParams `json:"params"`
	Modes  []hopMode `json:"modes"`
}

// hopOrders are the six orders of the three targets; round r uses
// hopOrders[r%6], so each target runs first, second and last equally often.
var hopOrders = [6][3]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 2, 1}, {2, 1, 0}, {1, 0, 2}}

func runHop(ctx context.Context, e *env, p hopParams) (*hopResult, error) {
	res := &hopResult{Meta: newMeta("hop", e.command), Params: p}
	if err := e.art.build(ctx); err != nil {
		return nil, err
	}
	targets, stop, err := hopSetup(ctx, e)
	if err != nil {
		return nil, err
	}
	defer stop()

	var modes []hopMode
	for _, c := range p.Concurrency {
		name := fmt.Sprintf("closed loop, %d clients", c)
		if c == 1 {
			name = "closed loop, 1 client, request by request"
		}
		modes = append(modes, hopMode{Name: name, Concurrency: c})
	}
	for _, r := range p.Rates {
		modes = append(modes, hopMode{Name: fmt.Sprintf("open loop, %g req/s (Poisson)", r), Rate: r})
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, m := range modes {
		e.logf("hop: %s", m.Name)
		slice := func(t *target, d time.Duration) *outcome {
			if m.Rate > 0 {
				return openLoop(ctx, t, m.Rate, d, 4096, rng, false)
			}
			return closedLoop(ctx, t, m.Concurrency, d)
		}
		for _, t := range targets { // warm-up: connections, caches, the scaler's view
			slice(t, p.Slice/2)
		}
		rounds := make([][]*outcome, len(targets))
		for r := range p.Rounds {
			if m.Concurrency == 1 {
				// One client: interleave request by request.
				for i, o := range interleaved(ctx, targets, time.Duration(len(targets))*p.Slice) {
					rounds[i] = append(rounds[i], o)
				}
				continue
			}
			for _, i := range hopOrders[r%len(hopOrders)] {
				rounds[i] = append(rounds[i], slice(targets[i], p.Slice))
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if m.Rate > 0 {
			var late []time.Duration
			for _, outs := range rounds {
				for _, o := range outs {
					late = append(late, o.late...)
				}
			}
			l := summarize(late)
			m.SendLateness = &l
		}
		m.Targets = make([]hopTarget, len(targets))
		for i, t := range targets {
			m.Targets[i] = hopSummarize(t.name, rounds[i])
		}
		d, b, f := m.Targets[0], m.Targets[1], m.Targets[2]
		ratios := make([]float64, 0, p.Rounds)
		for r := range p.Rounds {
			ratios = append(ratios, addedRatio(d.Rounds[r].P50us, b.Rounds[r].P50us, f.Rounds[r].P50us))
		}
		m.Ratio = spreadOf(ratios)
		m.PooledRatio = addedRatio(d.Pooled.P50, b.Pooled.P50, f.Pooled.P50)
		m.P99Ratio = addedRatio(d.P99.Median, b.P99.Median, f.P99.Median)
		e.logf("hop: %s: p50 direct %s, bare chain %s, faasplane %s; added-latency ratio %.2f (%.2f–%.2f)", m.Name,
			fmtUS(d.P50.Median), fmtUS(b.P50.Median), fmtUS(f.P50.Median), m.Ratio.Median, m.Ratio.Min, m.Ratio.Max)
		res.Modes = append(res.Modes, m)
	}
	res.Meta.finish()
	return res, nil
}

// addedRatio is faasplane's added latency over the bare chain's.
func addedRatio(direct, bare, fp float64) float64 {
	if bare-direct <= 0 {
		return 0
	}
	return (fp - direct) / (bare - direct)
}

func hopSummarize(name string, outs []*outcome) hopTarget {
	t := hopTarget{Name: name, Errors: map[string]int{}}
	var all []time.Duration
	var p50, p99, thr []float64
	for _, o := range outs {
		l := summarize(o.lat)
		r := hopRound{P50us: l.P50, P99us: l.P99, OK: len(o.lat), Errors: o.byStatus}
		if o.dropped > 0 {
			r.Errors["dropped"] = o.dropped
		}
		r.Throughput = float64(len(o.lat)) / o.elapsed.Seconds()
		for k, v := range r.Errors {
			t.Errors[k] += v
		}
		t.Rounds = append(t.Rounds, r)
		p50, p99, thr = append(p50, l.P50), append(p99, l.P99), append(thr, r.Throughput)
		all = append(all, o.lat...)
	}
	t.P50, t.P99, t.Throughput, t.Pooled = spreadOf(p50), spreadOf(p99), spreadOf(thr), summarize(all)
	return t
}

// hopSetup starts the three paths to hello and returns their targets.
func hopSetup(ctx context.Context, e *env) (_ []*target, stop func(), err error) {
	var cleanups []func()
	stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	fn, err := startFunction(ctx, e.art.hello)
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, fn.stop)
	agentLike, err := startBareProxy(ctx, e.art.bareproxy, "http://"+fn.addr)
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, agentLike.stop)
	gwLike, gwAddr, err := serveBareProxy("http://" + agentLike.addr)
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, gwLike)

	pl, err := startPlane(ctx, e.art, filepath.Join(e.tmp, "hop"), faas.Config{
		Pool:   warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 2}}},
		NodeID: "bench-hop",
	})
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, pl.close)
	ref := e.origin().put("hello.tar.gz", e.art.helloPkg)
	if err := pl.dp.Deploy(ctx, faas.FunctionSpec{
		ID: "hello", Runtime: "go", Code: ref,
		Concurrency: 256, MinInstances: 1, MaxInstances: 1, KeepAlive: time.Hour,
	}); err != nil {
		return nil, nil, err
	}
	if err := pl.waitInstances(ctx, "hello", 1, 30*time.Second); err != nil {
		return nil, nil, err
	}

	hdr := http.Header{lifecycle.HeaderFunctionID: {"hello"}, lifecycle.HeaderCaller: {"bench"}}
	targets := []*target{
		newTarget("direct", "http://"+fn.addr+"/", hdr, 30*time.Second),
		newTarget("bare chain", "http://"+gwAddr+"/", hdr, 30*time.Second),
		newTarget("faasplane", pl.url+"/", hdr, 30*time.Second),
	}
	cleanups = append(cleanups, func() {
		for _, t := range targets {
			t.close()
		}
	})
	for _, t := range targets {
		if status, code := t.call(ctx); status != http.StatusOK {
			return nil, nil, fmt.Errorf("hop: %s answered %d %s", t.name, status, code)
		}
	}
	return targets, stop, nil
}

// serveBareProxy serves, in this process, the gateway-like hop of the bare
// chain: an httputil.ReverseProxy with the same transport settings as the
// faasplane gateway's.
func serveBareProxy(upstream string) (stop func(), addr string, err error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, "", err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		_ = srv.Close()
		rp.Transport.(*http.Transport).CloseIdleConnections()
	}, ln.Addr().String(), nil
}

func hopMarkdown(r *hopResult) string {
	var b strings.Builder
	b.WriteString(header(r.Meta, fmt.Sprintf("%d rounds; in each, one %v slice of load per path, in an order that rotates over the six permutations "+
		"(with one client: %v of requests that go to the three paths in turn, request by request); figures are the median over rounds with their range",
		r.Params.Rounds, r.Params.Slice, 3*r.Params.Slice)))
	b.WriteString("\n")
	var rows [][]string
	for _, m := range r.Modes {
		direct := m.Targets[0].P50.Median
		for _, t := range m.Targets {
			added := "—"
			if t.Name != "direct" {
				added = fmtUS(t.P50.Median - direct)
			}
			errs := "0"
			if len(t.Errors) > 0 {
				errs = fmtCounts(t.Errors)
			}
			rows = append(rows, []string{m.Name, t.Name, fmtSpread(t.P50, fmtUS), fmtSpread(t.P99, fmtUS),
				fmtSpread(t.Throughput, fmtRate), added, errs})
		}
	}
	b.WriteString(table([]string{"load", "path", "p50", "p99", "throughput (req/s)", "added p50", "errors"}, "llrrrrl", rows))
	b.WriteString("\n")
	rows = rows[:0]
	for _, m := range r.Modes {
		verdict := "✔"
		if m.Ratio.Median > 1.3 {
			verdict = "✘"
		}
		rows = append(rows, []string{m.Name, fmt.Sprintf("**%.2f** (%.2f–%.2f; %.2f–%.2f)", m.Ratio.Median, m.Ratio.P25, m.Ratio.P75, m.Ratio.Min, m.Ratio.Max),
			f2(m.PooledRatio), f2(m.P99Ratio), verdict})
	}
	b.WriteString(table([]string{"load", "added-latency ratio of p50s: median of rounds (middle half; range)", "on pooled p50s", "on median p99s", "median ≤ 1.3"}, "lrrrl", rows))
	for _, m := range r.Modes {
		if m.SendLateness != nil {
			fmt.Fprintf(&b, "\n%s: latencies run from the moment each request was sent; the sender sent them %s (p50) / %s (p99) after their Poisson arrival times (Go timer resolution), the same for all three paths.\n",
				m.Name, fmtUS(m.SendLateness.P50), fmtUS(m.SendLateness.P99))
		}
	}
	return b.String()
}

func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
