package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// target is one HTTP endpoint a load generator calls: GET url with header.
type target struct {
	name   string
	url    string
	header http.Header
	client *http.Client
	tr     *http.Transport
}

func newTarget(name, url string, header http.Header, timeout time.Duration) *target {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &target{name: name, url: url, header: header, tr: tr, client: &http.Client{Transport: tr, Timeout: timeout}}
}

func (t *target) close() { t.tr.CloseIdleConnections() }

// call makes one request and returns its status and X-Faas-Error-Code
// (status 0 for a transport error).
func (t *target) call(ctx context.Context) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return 0, "client_error"
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, "client_error"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(lifecycle.HeaderErrorCode)
}

// outcome counts what a slice of load got back.
type outcome struct {
	mu sync.Mutex
	// lat holds the latency of every 200 answer; at the time of the
	// request's intended start for open-loop load.
	lat []time.Duration
	// okDone holds, for each 200 answer, when it arrived, as an offset
	// from the slice's start (for per-second goodput).
	okDone []time.Duration
	// byStatus counts the other answers: "503 shed", "0 client_error"...
	byStatus map[string]int
	// dropped counts open-loop arrivals not sent because too many
	// requests were outstanding.
	dropped int
	// elapsed is the slice's length: from its start until the last
	// request it started had ended.
	elapsed time.Duration
	// sent counts the requests sent.
	sent int
	// late holds, for open-loop load, how late each request was sent
	// after its intended time (the timer's resolution, CPU contention).
	late []time.Duration
}

func newOutcome(capacity int) *outcome {
	return &outcome{lat: make([]time.Duration, 0, capacity), byStatus: map[string]int{}}
}

// add records one answer: its latency d, and when it arrived (done, from
// the slice's start).
func (o *outcome) add(status int, code string, d, done time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent++
	if status == http.StatusOK {
		o.lat = append(o.lat, d)
		o.okDone = append(o.okDone, done)
		return
	}
	k := strconv.Itoa(status)
	if code != "" {
		k += " " + code
	}
	o.byStatus[k]++
}

// closedLoop runs conc clients, each sending its next request when the
// previous one answered, for dur.
func closedLoop(ctx context.Context, t *target, conc int, dur time.Duration) *outcome {
	o := newOutcome(4096)
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				s := time.Now()
				if !s.Before(end) {
					return
				}
				status, code := t.call(ctx)
				if ctx.Err() != nil {
					return
				}
				o.add(status, code, time.Since(s), time.Since(start))
			}
		}()
	}
	wg.Wait()
	o.elapsed = time.Since(start)
	return o
}

// interleaved runs one client that sends its requests to the targets in
// turn, request by request (in an order that rotates over the six
// permutations of three targets), for dur: closed loop at concurrency 1,
// with the finest interleaving, so that the noise of a shared machine hits
// every target alike. It returns one outcome per target.
func interleaved(ctx context.Context, targets []*target, dur time.Duration) []*outcome {
	outs := make([]*outcome, len(targets))
	for i := range outs {
		outs[i] = newOutcome(4096)
	}
	busy := make([]time.Duration, len(targets))
	start := time.Now()
	end := start.Add(dur)
	for n := 0; ctx.Err() == nil && time.Now().Before(end); n++ {
		for k := range targets {
			i := k
			if len(targets) == 3 {
				i = hopOrders[n%len(hopOrders)][k]
			}
			s := time.Now()
			status, code := targets[i].call(ctx)
			if ctx.Err() != nil {
				break
			}
			d := time.Since(s)
			busy[i] += d
			outs[i].add(status, code, d, time.Since(start))
		}
	}
	for i, o := range outs {
		// The time the client spent on this target: the throughput is
		// then what one client alone would get from it.
		o.elapsed = busy[i]
	}
	return outs
}

// openLoop sends requests at Poisson arrival times of the given rate for
// dur, whether or not earlier ones answered, with at most maxOut in flight
// (arrivals beyond it are counted as dropped). With fromIntended, each
// latency runs from the request's intended start, so that nothing the
// sender is late for goes unseen (coordinated omission); otherwise from
// the moment it was sent, which leaves out the sender's own lateness (Go's
// timers fire up to about a millisecond late) when that would blur a
// comparison of sub-millisecond paths. The sender never waits for answers,
// so its lateness does not depend on them.
func openLoop(ctx context.Context, t *target, rate float64, dur time.Duration, maxOut int, rng *rand.Rand, fromIntended bool) *outcome {
	o := newOutcome(int(rate*dur.Seconds()) + 16)
	sem := make(chan struct{}, maxOut)
	var wg sync.WaitGroup
	start := time.Now()
	next := time.Duration(0)
	for ctx.Err() == nil {
		next += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if next >= dur {
			break
		}
		if wait := time.Until(start.Add(next)); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			o.mu.Lock()
			o.dropped++
			o.mu.Unlock()
			continue
		}
		sent := time.Now()
		o.mu.Lock()
		o.late = append(o.late, sent.Sub(start.Add(next)))
		o.mu.Unlock()
		from := sent
		if fromIntended {
			from = start.Add(next)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			status, code := t.call(ctx)
			if ctx.Err() != nil {
				return
			}
			o.add(status, code, time.Since(from), time.Since(start))
		}()
	}
	wg.Wait()
	o.elapsed = time.Since(start)
	return o
}
