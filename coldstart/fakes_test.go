package coldstart

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// fakePool hands out numbered pods on nodes n1, n2, n1, n2, ... (or fails),
// and records deletions.
type fakePool struct {
	mu      sync.Mutex
	next    int
	idle    []warmpool.Pod // when set, Take picks from them by preference
	takeErr error
	takes   int
	deleted []string
}

func (p *fakePool) Take(ctx context.Context, runtime string, pref warmpool.Preference) (warmpool.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.takes++
	if p.takeErr != nil {
		return warmpool.Pod{}, p.takeErr
	}
	if err := ctx.Err(); err != nil {
		return warmpool.Pod{}, err
	}
	if p.idle != nil {
		best := -1
		for i, pod := range p.idle {
			if best < 0 || (pref != nil && pref(pod) > pref(p.idle[best])) {
				best = i
			}
		}
		if best < 0 {
			return warmpool.Pod{}, warmpool.ErrNoIdlePod
		}
		pod := p.idle[best]
		p.idle = slices.Delete(p.idle, best, best+1)
		return pod, nil
	}
	p.next++
	return warmpool.Pod{
		ID:      fmt.Sprintf("pod-%d", p.next),
		Node:    fmt.Sprintf("n%d", 1+p.next%2),
		Addr:    fmt.Sprintf("10.0.0.%d:8080", p.next),
		Runtime: runtime,
	}, nil
}

func (p *fakePool) Delete(_ context.Context, pod warmpool.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deleted = append(p.deleted, pod.ID)
	return nil
}

func (p *fakePool) stats() (takes int, deleted []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.takes, slices.Clone(p.deleted)
}

// fakeAgent answers loads and initializations like a well-behaved agent,
// unless told otherwise.
type fakeAgent struct {
	mu           sync.Mutex
	loadErr      error
	loadFunction string // when set, the function ID load answers with
	timings      lifecycle.Timings
	loadGate     chan struct{} // when set, loads wait for it (or ctx)
	initErrs     []error       // errors of the first init calls, in order
	initFunction string

	loads, inits           atomic.Int64
	loadsInFlight, maxLoad atomic.Int64
}

func (a *fakeAgent) Load(ctx context.Context, ctl lifecycle.Control, req lifecycle.LoadRequest) (lifecycle.LoadResponse, error) {
	a.loads.Add(1)
	n := a.loadsInFlight.Add(1)
	defer a.loadsInFlight.Add(-1)
	for {
		m := a.maxLoad.Load()
		if n <= m || a.maxLoad.CompareAndSwap(m, n) {
			break
		}
	}
	a.mu.Lock()
	gate, err, fid, timings := a.loadGate, a.loadErr, a.loadFunction, a.timings
	a.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return lifecycle.LoadResponse{}, &lifecycle.CallError{Op: "load", Addr: ctl.Addr, Reached: true, Err: ctx.Err()}
		}
	}
	if err != nil {
		return lifecycle.LoadResponse{}, err
	}
	if fid == "" {
		fid = req.FunctionID
	}
	return lifecycle.LoadResponse{FunctionID: fid, PID: 42, Protocol: lifecycle.ProtocolHTTP1, CacheHit: true, Timings: timings}, nil
}

func (a *fakeAgent) Initialize(ctx context.Context, ctl lifecycle.Control, req lifecycle.InitializeRequest) (lifecycle.InitializeResponse, error) {
	n := a.inits.Add(1)
	a.mu.Lock()
	var err error
	if int(n) <= len(a.initErrs) {
		err = a.initErrs[n-1]
	}
	fid := a.initFunction
	a.mu.Unlock()
	if err != nil {
		return lifecycle.InitializeResponse{}, err
	}
	if fid == "" {
		fid = req.FunctionID
	}
	return lifecycle.InitializeResponse{FunctionID: fid, Attempts: int(n)}, nil
}

func (a *fakeAgent) set(f func(a *fakeAgent)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

var errTest = errors.New("test failure")

// testFunction returns a valid function.
func testFunction(id string) Function {
	return Function{
		ID:      id,
		Runtime: "go",
		Code: lifecycle.CodeRef{
			URI:    "file:///srv/code/" + id + ".tar.gz",
			Digest: "sha256:" + fmt.Sprintf("%064x", len(id)),
			Size:   1234,
		},
		Limits: lifecycle.Limits{Concurrency: 4},
	}
}
