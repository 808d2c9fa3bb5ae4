package code

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrStoreClosed reports a call to a cache or tiered store after its Close.
var ErrStoreClosed = errors.New("code: store closed")

// fetchGroup collapses concurrent fetches of one digest into one
// (singleflight) and owns the goroutines that run them, so that Close can
// stop and wait for them. A fetch runs on the group's context, not on its
// first caller's: a caller that gives up does not fail the others waiting
// for the same package, and each caller still waits no longer than its own
// context allows. Every fetch is bounded by timeout.
type fetchGroup struct {
	sf      singleflight.Group
	timeout time.Duration

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

func newFetchGroup(timeout time.Duration) *fetchGroup {
	ctx, cancel := context.WithCancel(context.Background())
	return &fetchGroup{timeout: timeout, ctx: ctx, cancel: cancel}
}

// do runs fn once for all concurrent callers with the same key, and waits
// for it or for ctx.
func (g *fetchGroup) do(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrStoreClosed
	}
	g.wg.Add(1)
	g.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		defer g.wg.Done()
		_, err, _ := g.sf.Do(key, func() (any, error) {
			fctx, cancel := context.WithTimeout(g.ctx, g.timeout)
			defer cancel()
			return nil, fn(fctx)
		})
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close cancels the fetches in flight and waits for their goroutines. It is
// idempotent.
func (g *fetchGroup) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}

// ctxReader fails a copy as soon as its context is done, so that a fetch
// from a store that ignores its context still stops between reads.
type ctxReader struct {
	ctx context.Context
	r   interface{ Read([]byte) (int, error) }
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
