package faastest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/faasplane/faas/coldstart/code"
)

// CodeStoreConfig configures a [CodeStore]. The zero value is valid: opens
// answer at once and never fail.
type CodeStoreConfig struct {
	// Latency is the latency of one Open: a sample of it is waited for
	// before the store answers. Default none.
	Latency Dist
	// FailRate is the probability that an Open fails, after its latency,
	// with an error wrapping code.ErrFetch and ErrInjected (a transient
	// failure: the package may well be there). Default 0.
	FailRate float64
	// Clock, when set, is the clock Open waits on (tests advance it);
	// nil waits in real time.
	Clock *Clock
	// Seed seeds the latency samples and the failures.
	Seed uint64
}

// CodeStoreStats counts a [CodeStore]'s activity: its calls (hits and
// misses of the opens that got past the injected failures) and the
// injected failures.
type CodeStoreStats struct {
	CodeStoreCounts
	// Failures counts the opens failed by injection (FailRate, FailNext,
	// SetDown).
	Failures int64
}

// CodeStore is a fake code.Store (and code.Putter) for tests: an in-memory
// store, which serves packages by digest, counts hits and misses and can
// serve corrupt bytes (PutRaw), behind a latency drawn from a
// distribution (on a fake or a real clock) and injected transient
// failures: at a rate, for the next n opens, or all of them while the
// store is down. It is safe for concurrent use.
type CodeStore struct {
	*memStore
	cfg CodeStoreConfig

	mu       sync.Mutex
	rng      *rand.Rand
	failNext int
	down     bool
	failures int64
}

// NewCodeStore returns an empty fake store.
func NewCodeStore(cfg CodeStoreConfig) *CodeStore {
	return &CodeStore{memStore: newMemStore(), cfg: cfg, rng: newRand(cfg.Seed)}
}

// Open waits for the latency (or until ctx is done), then fails with an
// injected error or serves the stored bytes, or an error wrapping
// code.ErrNotFound (a miss).
func (s *CodeStore) Open(ctx context.Context, ref code.Ref) (io.ReadCloser, error) {
	s.mu.Lock()
	latency := sample(s.cfg.Latency, s.rng)
	fail := s.down || s.failNext > 0 || (s.cfg.FailRate > 0 && s.rng.Float64() < s.cfg.FailRate)
	if s.failNext > 0 {
		s.failNext--
	}
	s.mu.Unlock()
	if err := wait(ctx, s.cfg.Clock, latency); err != nil {
		return nil, err
	}
	if fail {
		s.mu.Lock()
		s.failures++
		s.mu.Unlock()
		return nil, fmt.Errorf("faastest: open %s: %w (%w)", ref.Digest, code.ErrFetch, ErrInjected)
	}
	return s.memStore.Open(ctx, ref)
}

// FailNext makes the next n opens fail with an injected transient error.
func (s *CodeStore) FailNext(n int) {
	s.mu.Lock()
	s.failNext = max(n, 0)
	s.mu.Unlock()
}

// SetDown makes every open fail with an injected transient error while
// down is true: an origin outage.
func (s *CodeStore) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Stats returns the store's counters.
func (s *CodeStore) Stats() CodeStoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return CodeStoreStats{CodeStoreCounts: s.memStore.Stats(), Failures: s.failures}
}

var _ code.Putter = (*CodeStore)(nil)
