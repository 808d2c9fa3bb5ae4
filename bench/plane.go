package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

// plane is a real Dataplane with pods/local agents and its HTTP gateway on
// loopback, as an application embeds it.
type plane struct {
	dp    *faas.Dataplane
	pods  *local.Provider
	store *code.SchemeStore
	srv   *http.Server
	url   string
}

// startPlane completes cfg with a pods/local provider (agents from a) in
// dir and an origin store (file:// and http://), starts the Dataplane and
// serves its gateway.
func startPlane(ctx context.Context, a *artifacts, dir string, cfg faas.Config) (*plane, error) {
	return startPlaneWrapped(ctx, a, dir, cfg, nil)
}

// startPlaneWrapped is startPlane with the pod provider wrapped by wrap.
func startPlaneWrapped(ctx context.Context, a *artifacts, dir string, cfg faas.Config, wrap func(*local.Provider) warmpool.PodProvider) (_ *plane, err error) {
	p := &plane{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.pods, err = local.New(ctx, local.Config{AgentPath: a.agent, Dir: filepath.Join(dir, "pods")}); err != nil {
		return nil, err
	}
	if p.store, err = code.NewOrigin(code.OriginConfig{}); err != nil {
		return nil, err
	}
	cfg.Pods, cfg.Code = p.pods, p.store
	if wrap != nil {
		cfg.Pods = wrap(p.pods)
	}
	if p.dp, err = faas.New(cfg); err != nil {
		return nil, err
	}
	if err = p.dp.Start(ctx); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.srv = &http.Server{Handler: p.dp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	p.url = "http://" + ln.Addr().String()
	return p, nil
}

func (p *plane) close() {
	if p.srv != nil {
		_ = p.srv.Close()
	}
	if p.dp != nil {
		_ = p.dp.Close()
	}
	if p.pods != nil {
		_ = p.pods.Close()
	}
	if p.store != nil {
		_ = p.store.Close()
	}
}

// waitInstances waits until fn has at least n routable instances.
func (p *plane) waitInstances(ctx context.Context, fn string, n int, within time.Duration) error {
	return waitFor(ctx, within, func() bool {
		fs, ok := p.dp.FunctionStats(fn)
		return ok && fs.Routes.Instances >= n
	}, func() error {
		fs, _ := p.dp.FunctionStats(fn)
		return fmt.Errorf("function %s: %d of %d instances after %v", fn, fs.Routes.Instances, n, within)
	})
}

// waitFor polls cond every 2 ms until it holds, ctx ends or within passes
// (then it returns fail()). The suite polls state that offers no
// notification (pool sizes, route counts); every wait is bounded.
func waitFor(ctx context.Context, within time.Duration, cond func() bool, fail func() error) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fail()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

var errNoScenario = errors.New("no such scenario")
