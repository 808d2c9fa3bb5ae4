package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/lifecycle"
)

// demo drives the phases and keeps what the verdict checks.
type demo struct {
	w       io.Writer
	dp      *faas.Dataplane
	gateway string
	admin   string // the status page and /metrics, with -serve
	client  *http.Client
	scale   float64

	scaledUpTo   int
	shedSeen     uint64
	retryAfter   bool
	zeroAfter    time.Duration
	returnCold   bool
	unexpected   []string
	phaseResults []*result
}

// result collects the answers of one phase.
type result struct {
	name     string
	mu       sync.Mutex
	byStatus map[string]int
	lat      []time.Duration // of the admitted requests; guarded by mu
	retryHdr int
	shed     chan struct{} // closed when the first shed answer is counted
}

// shedKey is how a shed answer is counted in result.byStatus.
var shedKey = fmt.Sprintf("%d %s", http.StatusServiceUnavailable, lifecycle.CodeShed)

func newResult(name string) *result {
	return &result{name: name, byStatus: map[string]int{}, shed: make(chan struct{})}
}

// quantile returns the q-quantile of the admitted requests' latencies (0
// for none).
func (r *result) quantile(q float64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lat) == 0 {
		return 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

func (r *result) add(status int, code string, d time.Duration, retryAfter bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := fmt.Sprint(status)
	if code != "" {
		key += " " + code
	}
	r.byStatus[key]++
	if key == shedKey && r.byStatus[key] == 1 {
		close(r.shed)
	}
	if status == http.StatusOK {
		r.lat = append(r.lat, d)
	}
	if retryAfter {
		r.retryHdr++
	}
}

func (r *result) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.byStatus))
	for k := range r.byStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, r.byStatus[k])
	}
	return strings.Join(parts, ", ")
}

func (r *result) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.byStatus {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// send makes one request through the gateway.
func (d *demo) send(ctx context.Context, r *result, fn, query, body string) int {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.gateway+"/invoke/"+fn+query, strings.NewReader(body))
	if err != nil {
		r.add(0, "client_error", 0, false)
		return 0
	}
	req.Header.Set(lifecycle.HeaderCaller, "quickstart")
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			r.add(0, "client_error", 0, false)
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.add(resp.StatusCode, resp.Header.Get(lifecycle.HeaderErrorCode), time.Since(start), resp.Header.Get("Retry-After") != "")
	return resp.StatusCode
}

// load runs workers closed-loop clients against fn for dur. With until
// set, the clients go on after dur until until is closed, for at most
// overtime more: a phase that must show something (the overload, a shed
// answer) does not end before it did because a busy machine ran its
// clients slowly.
func (d *demo) load(ctx context.Context, r *result, workers int, dur time.Duration, fn, query string, until <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if d.send(ctx, r, fn, query, "x") == http.StatusServiceUnavailable {
					// A polite client backs off when told to.
					select {
					case <-time.After(20 * time.Millisecond):
					case <-ctx.Done():
					}
				}
			}
		}()
	}
	phase := time.NewTimer(dur)
	defer phase.Stop()
	select {
	case <-phase.C:
		if until != nil {
			over := time.NewTimer(overtime)
			defer over.Stop()
			select {
			case <-until:
			case <-over.C:
			case <-ctx.Done():
			}
		}
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
}

// overtime bounds how long a phase runs past its duration for what it must
// show; a dataplane that has not shown it by then is broken.
const overtime = 20 * time.Second

func (d *demo) dur(base time.Duration) time.Duration { return time.Duration(float64(base) * d.scale) }

func (d *demo) instances(fn string) int {
	fs, _ := d.dp.FunctionStats(fn)
	return fs.Routes.Instances
}

// hellos are the echo functions: Go, Python (hot-loaded) and Node.js
// (hot-loaded).
var hellos = []string{"hello", "hello-py", "hello-node"}

// total returns the instances of the functions fns.
func (d *demo) total(fns []string) int {
	n := 0
	for _, fn := range fns {
		n += d.instances(fn)
	}
	return n
}

func (d *demo) coldStarts(fn string) uint64 {
	fs, _ := d.dp.FunctionStats(fn)
	return fs.ColdStarts.Count
}

func (d *demo) phase(n int, name, what string) *result {
	fmt.Fprintf(d.w, "phase %d/5  %-9s %s\n", n, name, what)
	r := newResult(name)
	d.phaseResults = append(d.phaseResults, r)
	return r
}

func (d *demo) expectOnly(r *result, allowed ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.byStatus {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
			}
		}
		if !ok {
			d.unexpected = append(d.unexpected, fmt.Sprintf("phase %s: %d × %s", r.name, v, k))
		}
	}
}

func (d *demo) phases(ctx context.Context) error {
	// 1. Warm-up: the first request of each function cold-starts it.
	r := d.phase(1, "warm-up", "10 sequential requests to hello, hello-py, hello-node and to sleep (5 ms)")
	for i := range 10 {
		for _, fn := range hellos {
			d.send(ctx, r, fn, "", fmt.Sprintf("hi %d", i))
		}
		d.send(ctx, r, "sleep", "?ms=5", "")
	}
	d.expectOnly(r, "200")
	var cold []string
	for _, fn := range append(slices.Clone(hellos), "sleep") {
		fs, _ := d.dp.FunctionStats(fn)
		cold = append(cold, fmt.Sprintf("%s %d (%v)", fn, fs.ColdStarts.Count, fs.ColdStarts.P50.Total.Round(100*time.Microsecond)))
	}
	fmt.Fprintf(d.w, "           %s; cold starts: %s\n", r.summary(), strings.Join(cold, ", "))

	// 2. Burst: more concurrency than one instance takes; the autoscaler
	// scales out before requests wait long.
	workers := max(8, int(48*d.scale))
	r = d.phase(2, "burst", fmt.Sprintf("%d concurrent clients on sleep (40 ms) for %v", workers, d.dur(3*time.Second)))
	before := d.instances("sleep")
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.load(ctx, r, workers, d.dur(3*time.Second), "sleep", "?ms=40", nil)
	}()
	d.scaledUpTo = before
	for {
		select {
		case <-done:
		case <-time.After(50 * time.Millisecond):
			d.scaledUpTo = max(d.scaledUpTo, d.instances("sleep"))
			continue
		}
		break
	}
	d.scaledUpTo = max(d.scaledUpTo, d.instances("sleep"))
	d.expectOnly(r, "200")
	fmt.Fprintf(d.w, "           %s; sleep instances %d → %d; p50 %v p99 %v\n", r.summary(), before, d.scaledUpTo,
		r.quantile(.5).Round(100*time.Microsecond), r.quantile(.99).Round(100*time.Microsecond))

	// 3. Overload: far more than the dataplane's capacity (64 in flight);
	// the shedder refuses the excess early, admitted requests still finish.
	// The shedder counts what is in flight inside the dataplane, and a
	// closed-loop client spends part of each round outside it (more of it
	// on a busy machine): the clients are a multiple of the capacity at any
	// scale, so that the dataplane holds more than its capacity even when
	// it sees only a third of them at a time. The phase lasts until a shed
	// answer was counted (the verdict reads that count), bounded by
	// overtime.
	workers = max(3*shedCapacity, int(300*d.scale))
	r = d.phase(3, "overload", fmt.Sprintf("%d concurrent clients on sleep (100 ms) for %v, capacity %d", workers, d.dur(3*time.Second), shedCapacity))
	d.load(ctx, r, workers, d.dur(3*time.Second), "sleep", "?ms=100", r.shed)
	d.shedSeen = uint64(r.count(shedKey))
	d.retryAfter = r.retryHdr > 0 && r.retryHdr == int(d.shedSeen)
	d.expectOnly(r, "200", shedKey)
	fmt.Fprintf(d.w, "           %s; shed requests carried Retry-After: %v; admitted p50 %v p99 %v\n", r.summary(), d.retryAfter,
		r.quantile(.5).Round(100*time.Microsecond), r.quantile(.99).Round(100*time.Microsecond))

	// 4. Idle: no traffic; after the keep-alive every function scales to
	// zero.
	d.phase(4, "idle", "no traffic: waiting for scale to zero")
	t := time.Now()
	deadline := time.After(d.dur(30*time.Second) + 10*time.Second)
	all := append(slices.Clone(hellos), "sleep")
	for d.total(all) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("functions did not scale to zero (%d instances left)", d.total(all))
		case <-time.After(100 * time.Millisecond):
		}
	}
	d.zeroAfter = time.Since(t)
	fmt.Fprintf(d.w, "           hello, hello-py, hello-node and sleep at 0 instances after %v\n", d.zeroAfter.Round(100*time.Millisecond))

	// 5. Return: traffic comes back; the first request cold-starts again.
	r = d.phase(5, "return", "10 requests to hello, hello-py and hello-node")
	coldBefore := map[string]uint64{}
	for _, fn := range hellos {
		coldBefore[fn] = d.coldStarts(fn)
	}
	for i := range 10 {
		for _, fn := range hellos {
			d.send(ctx, r, fn, "", fmt.Sprintf("back %d", i))
		}
	}
	d.expectOnly(r, "200")
	d.returnCold = true
	for _, fn := range hellos {
		d.returnCold = d.returnCold && d.coldStarts(fn) > coldBefore[fn]
	}
	fmt.Fprintf(d.w, "           %s; cold-started again: %v\n\n", r.summary(), d.returnCold)
	return ctx.Err()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// report prints the final table.
func (d *demo) report() {
	st := d.dp.Stats()
	tw := tabwriter.NewWriter(d.w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "function\trequests\tok\tcold starts\ttake\tfetch\tload\tinit\twarm hits\tshed\tother errors\tp50 ms\tp95 ms\tp99 ms\t")
	for _, fs := range st.Functions {
		other := []string{}
		for c, n := range fs.Errors {
			if c != lifecycle.CodeShed {
				other = append(other, fmt.Sprintf("%s:%d", c, n))
			}
		}
		sort.Strings(other)
		if len(other) == 0 {
			other = []string{"0"}
		}
		p50 := fs.ColdStarts.P50
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", fs.ID, fs.Requests, fs.OK, fs.ColdStarts.Count,
			ms(p50.Take), ms(p50.Fetch), ms(p50.Load), ms(p50.Init), fs.WarmHits, fs.Shed, strings.Join(other, " "),
			ms(fs.Latency.P50), ms(fs.Latency.P95), ms(fs.Latency.P99))
	}
	_ = tw.Flush()
	c := st.ColdStarts
	fmt.Fprintf(d.w, "\ncold starts: %d (failed %d), p50 %s ms = take %s + load %s (fetch %s) + init %s; p99 %s ms\n",
		c.Count, c.Failed, ms(c.P50.Total), ms(c.P50.Take), ms(c.P50.Load), ms(c.P50.Fetch), ms(c.P50.Init), ms(c.P99))
	fmt.Fprintln(d.w, "(take: a warm pod from the pool; load: the agent fetches the code through its node's cache and starts the process, or, for hello-py and hello-node, hot-loads it into the runtime already running in the pod; init: the function's init hook)")
}

// verdict checks that every phase did what it is there to show.
func (d *demo) verdict() error {
	var problems []string
	problems = append(problems, d.unexpected...)
	if d.scaledUpTo < 2 {
		problems = append(problems, "the burst did not scale sleep beyond one instance")
	}
	if d.shedSeen == 0 {
		problems = append(problems, "the overload shed nothing")
	} else if !d.retryAfter {
		problems = append(problems, "shed responses lacked Retry-After")
	}
	if !d.returnCold {
		problems = append(problems, "the return after scale to zero did not cold-start")
	}
	if len(problems) > 0 {
		return fmt.Errorf("unexpected behaviour:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}
