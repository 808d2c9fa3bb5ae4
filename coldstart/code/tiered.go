package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"
)

// Putter is a [Store] that can be filled: a cache tier. Put reads a package
// from r and stores it only if its bytes match ref (Put verifies them, e.g.
// with [VerifyReader]); otherwise it returns an error wrapping
// ErrDigestMismatch or ErrSizeMismatch and stores nothing. [DiskCache] and
// faastest.CodeStore are Putters; an HTTP cache that accepts uploads may be one.
type Putter interface {
	Store
	Put(ctx context.Context, ref Ref, r io.Reader) error
}

// verifiedStore is implemented by stores that serve only bytes they verified
// before storing them, so that their readers need no second hash.
type verifiedStore interface{ servesVerified() }

// TieredConfig configures a [Tiered] store.
type TieredConfig struct {
	// Tiers are the stores, fastest first: typically the node's
	// [DiskCache] (created with a nil next store), then a shared cache,
	// then the origin. The first tier must be a [Putter]. At least two
	// tiers are required.
	Tiers []Store
	// FetchTimeout bounds one fetch-and-fill, shared by every caller
	// waiting for the same digest. Default 5 minutes.
	FetchTimeout time.Duration
	// Logger receives warnings about tiers that failed or served bad
	// data. nil discards them.
	Logger *slog.Logger
}

// TieredStats counts a Tiered store's activity.
type TieredStats struct {
	// Hits[i] counts packages found in tier i, whether to serve an Open
	// directly (tier 0) or to fill the tiers above it.
	Hits []int64
	// Fetches counts fetch-and-fill runs: concurrent Opens of one digest
	// share one.
	Fetches int64
	// Rejected counts packages a tier served that failed verification.
	Rejected int64
}

// Tiered is a [Store] that chains tiers: local cache → shared cache →
// origin. An Open that misses the first tier looks the package up in the
// tiers below, in order; the first that has it fills every [Putter] tier
// above it (each verifying the bytes), and the Open is then served from the
// first tier. Concurrent Opens of one digest share one fetch
// (singleflight). A tier that fails or serves bytes that do not match the
// reference is skipped with a warning, and the next tier is tried; the
// error reports every tier's failure when none had the package.
//
// Tiered is safe for concurrent use. [Tiered.Close] stops its fetches; it
// does not close the tiers.
type Tiered struct {
	tiers   []Store
	log     *slog.Logger
	flights *fetchGroup

	hits              []atomic.Int64
	fetches, rejected atomic.Int64
}

// NewTiered returns a tiered store over cfg.Tiers.
func NewTiered(cfg TieredConfig) (*Tiered, error) {
	if len(cfg.Tiers) < 2 {
		return nil, fmt.Errorf("code: TieredConfig.Tiers needs at least 2 stores, got %d", len(cfg.Tiers))
	}
	for i, s := range cfg.Tiers {
		if s == nil {
			return nil, fmt.Errorf("code: TieredConfig.Tiers[%d] is nil", i)
		}
	}
	if _, ok := cfg.Tiers[0].(Putter); !ok {
		return nil, fmt.Errorf("code: TieredConfig.Tiers[0] (%T) must be a Putter", cfg.Tiers[0])
	}
	if cfg.FetchTimeout < 0 {
		return nil, fmt.Errorf("code: TieredConfig.FetchTimeout must not be negative, got %v", cfg.FetchTimeout)
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = 5 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tiered{
		tiers:   append([]Store(nil), cfg.Tiers...),
		log:     log,
		flights: newFetchGroup(cfg.FetchTimeout),
		hits:    make([]atomic.Int64, len(cfg.Tiers)),
	}, nil
}

// Open returns a verified reader of the package: the first tier's when it
// has the package, otherwise after one fetch-and-fill shared with the
// concurrent Opens of the same digest. It returns an error wrapping
// ErrInvalidRef for a Ref without a valid digest or size, and ErrNotFound
// when no tier has the package.
func (t *Tiered) Open(ctx context.Context, ref Ref) (io.ReadCloser, error) {
	if err := validCacheRef(ref); err != nil {
		return nil, err
	}
	if rc, err := t.openTop(ctx, ref, true); rc != nil || err != nil {
		return rc, err
	}
	err := t.flights.do(ctx, ref.Digest, func(ctx context.Context) error { return t.fill(ctx, ref) })
	switch {
	case errors.Is(err, errTooLargeToCache):
		return t.openUncached(ctx, ref)
	case err != nil:
		return nil, err
	}
	if rc, err := t.openTop(ctx, ref, false); rc != nil || err != nil {
		return rc, err
	}
	// Filled, then evicted at once: the top tier is too small for the
	// package's neighbours. Serve it from below rather than fail.
	return t.openUncached(ctx, ref)
}

// openTop opens ref from the first tier; (nil, nil) means a miss, including
// a first tier that failed (the tiers below may still serve). countHit
// says whether a hit counts in the statistics (the open after a fill does
// not).
func (t *Tiered) openTop(ctx context.Context, ref Ref, countHit bool) (io.ReadCloser, error) {
	rc, err := t.tiers[0].Open(ctx, ref)
	switch {
	case err == nil:
		if countHit {
			t.hits[0].Add(1)
		}
		return t.verified(0, rc, ref), nil
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case ctx.Err() != nil:
		return nil, err
	default:
		t.log.Warn("code tiered: first tier failed", "digest", ref.Digest, "err", err)
		return nil, nil
	}
}

func (t *Tiered) verified(i int, rc io.ReadCloser, ref Ref) io.ReadCloser {
	if _, ok := t.tiers[i].(verifiedStore); ok {
		return rc
	}
	return VerifyReader(rc, ref)
}

// errTooLargeToCache says that the first tier refused the package for its
// size, so the Open must stream it from below.
var errTooLargeToCache = errors.New("code tiered: package larger than the first tier")

// fill finds ref in the tiers below the first and fills the Putter tiers
// above the one that has it.
func (t *Tiered) fill(ctx context.Context, ref Ref) error {
	t.fetches.Add(1)
	top := t.tiers[0].(Putter)
	if h, ok := top.(interface{ Has(digest string) bool }); ok && h.Has(ref.Digest) {
		return nil // filled by a flight that ended just before this one started
	}
	var errs []error
	for i := 1; i < len(t.tiers); i++ {
		rc, err := t.tiers[i].Open(ctx, ref)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				t.log.Warn("code tiered: tier failed", "tier", i, "digest", ref.Digest, "err", err)
			}
			errs = append(errs, fmt.Errorf("tier %d: %w", i, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		t.hits[i].Add(1)
		err = top.Put(ctx, ref, rc)
		_ = rc.Close()
		if errors.Is(err, ErrTooLarge) {
			return errTooLargeToCache
		}
		if err != nil {
			if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch) {
				t.rejected.Add(1)
			}
			t.log.Warn("code tiered: tier served a bad package", "tier", i, "digest", ref.Digest, "err", err)
			errs = append(errs, fmt.Errorf("tier %d: %w", i, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		t.fillMiddle(ctx, ref, i)
		return nil
	}
	return fmt.Errorf("code tiered: %s: %w", ref.Digest, errors.Join(errs...))
}

// fillMiddle copies ref from the first tier into the Putter tiers strictly
// between it and tier found. Their failures are logged, not returned: the
// package is already where the Open needs it.
func (t *Tiered) fillMiddle(ctx context.Context, ref Ref, found int) {
	for j := 1; j < found; j++ {
		p, ok := t.tiers[j].(Putter)
		if !ok {
			continue
		}
		rc, err := t.tiers[0].Open(ctx, ref)
		if err != nil {
			t.log.Warn("code tiered: cannot read back the first tier", "digest", ref.Digest, "err", err)
			return
		}
		err = p.Put(ctx, ref, rc)
		_ = rc.Close()
		if err != nil {
			t.log.Warn("code tiered: filling a tier failed", "tier", j, "digest", ref.Digest, "err", err)
		}
	}
}

// openUncached streams ref from the first tier below the top that has it,
// verified, without caching it and without collapsing concurrent Opens.
func (t *Tiered) openUncached(ctx context.Context, ref Ref) (io.ReadCloser, error) {
	var errs []error
	for i := 1; i < len(t.tiers); i++ {
		rc, err := t.tiers[i].Open(ctx, ref)
		if err == nil {
			t.hits[i].Add(1)
			return t.verified(i, rc, ref), nil
		}
		errs = append(errs, fmt.Errorf("tier %d: %w", i, err))
	}
	return nil, fmt.Errorf("code tiered: %s: %w", ref.Digest, errors.Join(errs...))
}

// Stats returns the store's counters.
func (t *Tiered) Stats() TieredStats {
	s := TieredStats{Hits: make([]int64, len(t.hits)), Fetches: t.fetches.Load(), Rejected: t.rejected.Load()}
	for i := range t.hits {
		s.Hits[i] = t.hits[i].Load()
	}
	return s
}

// Close stops the fetches in flight and waits for them. It is idempotent;
// Opens that need a fetch fail with ErrStoreClosed after it.
func (t *Tiered) Close() error {
	t.flights.close()
	return nil
}

// servesVerified marks a Tiered store as serving only verified bytes: a
// reader it returns either comes from a tier that verified the package
// before storing it (a DiskCache hit, an io.ReaderAt that needs no second
// hash) or is wrapped in VerifyReader, which fails at EOF unless the bytes
// match.
func (t *Tiered) servesVerified() {}
