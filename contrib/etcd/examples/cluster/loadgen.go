package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// loadgen sends invocations to the functions over the live gateways, as a
// client behind a load balancer would: a gateway that refuses the
// connection is passed over and the request goes to another one (it never
// reached anybody). Every other failure counts.
type loadgen struct {
	client *http.Client
	fns    []string

	mu       sync.Mutex
	gateways map[string]string // node → gateway URL
	results  []result
}

type result struct {
	fn         string
	start, end time.Time
	ok         bool
	status     int
	err        string
	via        string // node whose gateway took it
}

func newLoadgen(fns []string) *loadgen {
	return &loadgen{
		client:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, Proxy: nil}, Timeout: 20 * time.Second},
		fns:      fns,
		gateways: map[string]string{},
	}
}

func (g *loadgen) setGateway(node, url string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if url == "" {
		delete(g.gateways, node)
	} else {
		g.gateways[node] = url
	}
}

func (g *loadgen) pickGateway(rng *rand.Rand, skip map[string]bool) (string, string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var nodes []string
	for n := range g.gateways {
		if !skip[n] {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return "", "", false
	}
	slices.Sort(nodes)
	n := nodes[rng.IntN(len(nodes))]
	return n, g.gateways[n], true
}

// run sends requests from workers goroutines until ctx ends.
func (g *loadgen) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			for ctx.Err() == nil {
				fn := g.fns[rng.IntN(len(g.fns))]
				g.invoke(ctx, rng, fn)
			}
		})
	}
	wg.Wait()
}

// invoke sends one request for fn and records it (unless ctx ended).
func (g *loadgen) invoke(ctx context.Context, rng *rand.Rand, fn string) result {
	r := result{fn: fn, start: time.Now()}
	skip := map[string]bool{}
	for {
		node, url, ok := g.pickGateway(rng, skip)
		if !ok {
			r.err = "no live gateway"
			break
		}
		r.via = node
		status, msg, err := g.post(ctx, url+"/invoke/"+fn)
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			skip[node] = true // a dead gateway: the balancer tries another
			continue
		}
		r.status = status
		if err != nil {
			r.err = err.Error()
			// The gateway broke a connection off: a balancer drops its
			// pooled connections, which may all be dead.
			g.client.CloseIdleConnections()
		} else if status != http.StatusOK {
			r.err = fmt.Sprint("status ", status, ": ", msg)
		}
		r.ok = err == nil && status == http.StatusOK
		break
	}
	r.end = time.Now()
	if ctx.Err() != nil {
		return r // cut short by the end of the phase: not the dataplane's doing
	}
	g.mu.Lock()
	g.results = append(g.results, r)
	g.mu.Unlock()
	return r
}

// post sends one request and returns its status and, for an error
// response, the dataplane's error message.
func (g *loadgen) post(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("ping"))
	if err != nil {
		return 0, "", err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get(lifecycle.HeaderErrorMessage), err
}

// since returns the results of the requests that started at or after t
// and ended before u (zero: no bound).
func (g *loadgen) between(t, u time.Time) []result {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []result
	for _, r := range g.results {
		if !r.start.Before(t) && (u.IsZero() || r.end.Before(u)) {
			out = append(out, r)
		}
	}
	return out
}

// failedInFlight returns the failed requests that started before u and
// were still in flight at t (t <= u): those a process dying between t and
// u may have been serving.
func (g *loadgen) failedInFlight(t, u time.Time) []result {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []result
	for _, r := range g.results {
		if !r.ok && r.start.Before(u) && !r.end.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

func countOK(rs []result) (ok, failed int) {
	for _, r := range rs {
		if r.ok {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}
