package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/clock"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// CacheConfig configures a [DiskCache].
type CacheConfig struct {
	// Dir is the cache's directory; it is created if missing. Several
	// processes on one node may share it: files appear in it only by
	// atomic rename, after they were verified. Required.
	Dir string
	// MaxBytes is the byte budget: when the packages this process holds
	// exceed it, the least recently used are deleted. A package larger
	// than MaxBytes is served from the next store without being cached.
	// Required, > 0.
	MaxBytes int64
	// FetchTimeout bounds one fetch from the next store, shared by every
	// caller waiting for the same digest. Default 5 minutes.
	FetchTimeout time.Duration
	// MaxOpenFiles is how many of the most recently used packages the
	// cache keeps open, so that their hits cost no system call. Default
	// 64; negative keeps none open.
	MaxOpenFiles int
	// Clock gives the time recorded as a package's last use. Default: the
	// system clock.
	Clock clock.Clock
	// Logger receives warnings about damaged files and failed index
	// writes. nil discards them.
	Logger *slog.Logger
}

// CacheStats counts a DiskCache's activity since it was created.
type CacheStats struct {
	// Hits counts Opens served from disk; Misses those that were not (a
	// miss is followed by a fetch when the cache has a next store).
	Hits, Misses int64
	// Evictions counts packages deleted to stay within the budget.
	Evictions int64
	// Entries and Bytes are the packages held now and their total size.
	Entries int
	Bytes   int64
}

// DiskCache is a content-addressed cache of code packages on local disk. A
// package's path is derived from its digest, so any Ref with that digest
// hits whatever its URI. It admits a package only after its bytes were
// verified against the Ref while being written to a temporary file, which
// is then fsynced and renamed into place: a reader, in this process or
// another, sees a complete, verified package or none. When the packages
// exceed the byte budget, the least recently used are deleted.
//
// A miss fetches from the next store (if any), and concurrent misses of one
// digest share one fetch. The usage history (size, hits, last use) is saved
// in the directory after every admission and on Close, and reloaded by
// [NewDiskCache], so that a restarted agent keeps its LRU order. A
// DiskCache is safe for concurrent use; [DiskCache.Close] stops its fetches
// and saves the history.
type DiskCache struct {
	cfg       CacheConfig
	next      Store
	blobDir   string
	tmpDir    string
	indexPath string
	log       *slog.Logger
	flights   *fetchGroup

	mu     sync.Mutex
	lru    *simplelru.LRU[string, *cacheEntry]
	files  *simplelru.LRU[string, *cacheFile] // nil when MaxOpenFiles < 0
	bytes  int64
	closed bool

	saveMu sync.Mutex // serializes index writes

	hits, misses, evictions atomic.Int64
	closeOnce               sync.Once
	closeErr                error
}

type cacheEntry struct {
	size    int64
	hits    int64
	lastUse time.Time
}

// The directory layout under CacheConfig.Dir.
const (
	cacheBlobDir   = "blobs/sha256"
	cacheTmpDir    = "tmp"
	cacheIndexFile = "index.json"
	// cacheTmpMaxAge is how old a temporary file must be before a starting
	// cache deletes it: younger ones may belong to another process's fetch
	// in progress.
	cacheTmpMaxAge = time.Hour
)

// NewDiskCache returns a cache in cfg.Dir in front of next. next may be nil
// for a cache that is only filled through [DiskCache.Put], such as the top
// tier of a [Tiered] store; its misses then return ErrNotFound. Packages already in the directory (left by an earlier
// run or by another process) are adopted, in the order of the saved usage
// history, and the least recently used beyond the budget are deleted.
func NewDiskCache(cfg CacheConfig, next Store) (*DiskCache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("code: CacheConfig.Dir is required")
	}
	if cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("code: CacheConfig.MaxBytes must be > 0, got %d", cfg.MaxBytes)
	}
	if cfg.FetchTimeout < 0 {
		return nil, fmt.Errorf("code: CacheConfig.FetchTimeout must not be negative, got %v", cfg.FetchTimeout)
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = 5 * time.Minute
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.MaxOpenFiles == 0 {
		cfg.MaxOpenFiles = 64
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &DiskCache{
		cfg:       cfg,
		next:      next,
		blobDir:   filepath.Join(cfg.Dir, filepath.FromSlash(cacheBlobDir)),
		tmpDir:    filepath.Join(cfg.Dir, cacheTmpDir),
		indexPath: filepath.Join(cfg.Dir, cacheIndexFile),
		log:       log,
		flights:   newFetchGroup(cfg.FetchTimeout),
	}
	for _, d := range []string{c.blobDir, c.tmpDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("code: cache directory: %w", err)
		}
	}
	// The LRU's own entry bound is unused: eviction is by bytes.
	lru, err := simplelru.NewLRU[string, *cacheEntry](math.MaxInt, nil)
	if err != nil {
		return nil, err
	}
	c.lru = lru
	if cfg.MaxOpenFiles > 0 {
		c.files, err = simplelru.NewLRU(cfg.MaxOpenFiles, func(_ string, h *cacheFile) { h.release() })
		if err != nil {
			return nil, err
		}
	}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// validCacheRef checks what a content-addressed store needs from a Ref: a
// well-formed digest and a positive size. The URI is not needed.
func validCacheRef(ref Ref) error {
	if err := ValidDigest(ref.Digest); err != nil {
		return err
	}
	if ref.Size <= 0 {
		return fmt.Errorf("%w: size must be > 0, got %d", ErrInvalidRef, ref.Size)
	}
	return nil
}

func (c *DiskCache) path(digest string) string {
	return filepath.Join(c.blobDir, digest[len(DigestPrefix):])
}

// Open returns the package ref names. A hit opens the file on disk; a miss
// fetches the package from the next store, verifies it, admits it and opens
// it. It returns an error wrapping ErrInvalidRef for a Ref without a valid
// digest or size, ErrNotFound when no store has the package,
// ErrDigestMismatch or ErrSizeMismatch when the next store served other
// bytes (nothing is cached then), and ErrSizeMismatch when the cache holds
// the digest with another size than ref.Size.
//
// Packages larger than the budget are streamed from the next store through
// [VerifyReader] without being cached.
func (c *DiskCache) Open(ctx context.Context, ref Ref) (io.ReadCloser, error) {
	if err := validCacheRef(ref); err != nil {
		return nil, err
	}
	f, err := c.openHit(ref, true)
	if f != nil || err != nil {
		return f, err
	}
	c.misses.Add(1)
	if c.next == nil {
		return nil, fmt.Errorf("%w: %s not in cache", ErrNotFound, ref.Digest)
	}
	if ref.Size > c.cfg.MaxBytes {
		rc, err := c.next.Open(ctx, ref)
		if err != nil {
			return nil, err
		}
		return VerifyReader(rc, ref), nil
	}
	// The package may be evicted between its admission and our open when
	// the budget is under pressure; fetch again a bounded number of times.
	for range 3 {
		if err := c.flights.do(ctx, ref.Digest, func(ctx context.Context) error { return c.fetch(ctx, ref) }); err != nil {
			return nil, err
		}
		if f, err := c.openHit(ref, false); f != nil || err != nil {
			return f, err
		}
	}
	return nil, fmt.Errorf("%w: %s evicted as soon as fetched (budget %d bytes too small?)", ErrNotFound, ref.Digest, c.cfg.MaxBytes)
}

// openHit opens the cached file of ref. It returns (nil, nil) on a miss.
// countHit says whether a hit counts in the statistics (a fetch's own open
// does not).
func (c *DiskCache) openHit(ref Ref, countHit bool) (io.ReadCloser, error) {
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrStoreClosed
	}
	e, ok := c.lru.Get(ref.Digest)
	var h *cacheFile
	if ok {
		if countHit {
			e.hits++
		}
		e.lastUse = now
		if c.files != nil && e.size == ref.Size {
			if h, _ = c.files.Get(ref.Digest); h != nil {
				h.refs.Add(1)
			}
		}
	}
	c.mu.Unlock()
	if ok && e.size != ref.Size {
		return nil, fmt.Errorf("%w: cache holds %s with %d bytes, reference says %d", ErrSizeMismatch, ref.Digest, e.size, ref.Size)
	}
	if h == nil {
		// Not open: open the file, which another process sharing the
		// directory may also have admitted.
		if h = c.openFile(ref, ok, now, countHit); h == nil {
			return nil, nil
		}
	}
	if countHit {
		c.hits.Add(1)
	}
	return &cacheReader{h: h, size: ref.Size, digest: ref.Digest, damaged: c.damaged}, nil
}

// openFile opens ref's file and returns it with one reference held for the
// caller, or nil on a miss. known says whether the index had the digest.
func (c *DiskCache) openFile(ref Ref, known bool, now time.Time, countHit bool) *cacheFile {
	p := c.path(ref.Digest)
	f, err := os.Open(p)
	if err != nil {
		if known {
			c.forget(ref.Digest) // deleted behind our back (another process evicted it)
		}
		return nil
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != ref.Size {
		_ = f.Close()
		if known {
			c.log.Warn("code cache: damaged file removed", "digest", ref.Digest)
			c.damaged(ref.Digest)
		}
		return nil
	}
	h := &cacheFile{f: f}
	h.refs.Store(1)
	var victims []string
	c.mu.Lock()
	if !known {
		e := &cacheEntry{size: ref.Size, lastUse: now}
		if countHit {
			e.hits = 1
		}
		victims = c.admitLocked(ref.Digest, e)
	}
	if _, still := c.lru.Peek(ref.Digest); still && c.files != nil && !c.closed {
		if shared, found := c.files.Get(ref.Digest); found {
			// Opened concurrently by another caller: use theirs.
			shared.refs.Add(1)
			_ = f.Close()
			h = shared
		} else {
			h.refs.Add(1) // the table's reference
			c.files.Add(ref.Digest, h)
		}
	}
	c.mu.Unlock()
	c.remove(victims)
	return h
}

// damaged drops a package whose file is not what was admitted.
func (c *DiskCache) damaged(digest string) {
	c.forget(digest)
	_ = os.Remove(c.path(digest))
}

// fetch copies ref from the next store into the cache.
func (c *DiskCache) fetch(ctx context.Context, ref Ref) error {
	if c.Has(ref.Digest) {
		return nil // filled by an earlier flight
	}
	rc, err := c.next.Open(ctx, ref)
	if err != nil {
		return err
	}
	defer rc.Close()
	return c.Put(ctx, ref, rc)
}

// Put stores the package read from r under ref's digest, verifying it
// against ref as it is written (with [VerifyReader]); a package that does
// not match is not stored and the error wraps ErrDigestMismatch or
// ErrSizeMismatch. A package larger than the budget is refused with
// ErrTooLarge. Putting a digest the cache holds reads nothing and returns
// nil.
func (c *DiskCache) Put(ctx context.Context, ref Ref, r io.Reader) error {
	if err := validCacheRef(ref); err != nil {
		return err
	}
	if ref.Size > c.cfg.MaxBytes {
		return fmt.Errorf("%w: %s has %d bytes, cache budget is %d", ErrTooLarge, ref.Digest, ref.Size, c.cfg.MaxBytes)
	}
	c.mu.Lock()
	closed, has := c.closed, c.lru.Contains(ref.Digest)
	c.mu.Unlock()
	if closed {
		return ErrStoreClosed
	}
	if has {
		return nil
	}
	if err := c.writeFile(ctx, ref, r); err != nil {
		return err
	}
	c.admit(ref.Digest, cacheEntry{size: ref.Size, lastUse: c.cfg.Clock.Now()})
	if err := c.Save(); err != nil {
		c.log.Warn("code cache: usage history not saved", "err", err)
	}
	return nil
}

// writeFile writes a verified copy of r to ref's path: temporary file,
// fsync (so that no crash can leave a partial file under the final name),
// atomic rename.
func (c *DiskCache) writeFile(ctx context.Context, ref Ref, r io.Reader) (err error) {
	hexPart := ref.Digest[len(DigestPrefix):]
	tmp, err := os.CreateTemp(c.tmpDir, hexPart+".*.tmp")
	if err != nil {
		return fmt.Errorf("code cache: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	vr := VerifyReader(io.NopCloser(ctxReader{ctx: ctx, r: r}), ref)
	if _, err = io.Copy(tmp, vr); err != nil {
		return fmt.Errorf("code cache: fetching %s: %w", ref.Digest, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("code cache: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("code cache: %w", err)
	}
	// The rename is not made durable with an fsync of the directory: a
	// rename lost in a crash costs a miss, not a damaged package, and a
	// miss's latency is a cold start's.
	if err = os.Rename(tmp.Name(), c.path(ref.Digest)); err != nil {
		return fmt.Errorf("code cache: %w", err)
	}
	return nil
}

// admit records a package that is on disk and evicts the least recently
// used packages beyond the budget.
func (c *DiskCache) admit(digest string, e cacheEntry) {
	c.mu.Lock()
	victims := c.admitLocked(digest, &e)
	c.mu.Unlock()
	c.remove(victims)
}

// admitLocked is admit with c.mu held; the caller deletes the returned
// victims' files after unlocking.
func (c *DiskCache) admitLocked(digest string, e *cacheEntry) []string {
	if _, ok := c.lru.Get(digest); ok {
		return nil
	}
	c.lru.Add(digest, e)
	c.bytes += e.size
	return c.evictLocked()
}

// evictLocked drops least recently used entries until the budget holds and
// returns their digests; the caller deletes the files outside the lock.
func (c *DiskCache) evictLocked() []string {
	var victims []string
	for c.bytes > c.cfg.MaxBytes && c.lru.Len() > 0 {
		d, e, _ := c.lru.RemoveOldest()
		if c.files != nil {
			c.files.Remove(d) // readers keep the file until they close it
		}
		c.bytes -= e.size
		c.evictions.Add(1)
		victims = append(victims, d)
	}
	return victims
}

func (c *DiskCache) remove(digests []string) {
	for _, d := range digests {
		// A reader that has the file open keeps reading it (POSIX).
		if err := os.Remove(c.path(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("code cache: evicted file not removed", "digest", d, "err", err)
		}
	}
}

// forget drops digest from the index without touching the file.
func (c *DiskCache) forget(digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.lru.Peek(digest); ok {
		c.lru.Remove(digest)
		c.bytes -= e.size
	}
	if c.files != nil {
		c.files.Remove(digest)
	}
}

// Has reports whether the cache holds digest, without counting a use. The
// dataplane asks it to place a function's cold start on a node that has its
// code.
func (c *DiskCache) Has(digest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Contains(digest)
}

// Digests returns the digests the cache holds, sorted.
func (c *DiskCache) Digests() []string {
	c.mu.Lock()
	keys := c.lru.Keys()
	c.mu.Unlock()
	slices.Sort(keys)
	return keys
}

// Stats returns the cache's counters.
func (c *DiskCache) Stats() CacheStats {
	c.mu.Lock()
	entries, bytes := c.lru.Len(), c.bytes
	c.mu.Unlock()
	return CacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load(),
		Entries: entries, Bytes: bytes,
	}
}

// Preload fetches the packages refs name that the cache does not hold, up
// to four at a time, so that a node is warm before its first cold start. It
// returns the errors of the packages that could not be fetched, joined.
func (c *DiskCache) Preload(ctx context.Context, refs ...Ref) error {
	if c.next == nil {
		return fmt.Errorf("%w: cache has no next store to preload from", ErrNotFound)
	}
	const parallel = 4
	sem := make(chan struct{}, parallel)
	errs := make([]error, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		if err := validCacheRef(ref); err != nil {
			errs[i] = err
			continue
		}
		if ref.Size > c.cfg.MaxBytes {
			errs[i] = fmt.Errorf("%w: %s has %d bytes, cache budget is %d", ErrTooLarge, ref.Digest, ref.Size, c.cfg.MaxBytes)
			continue
		}
		if c.Has(ref.Digest) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = c.flights.do(ctx, ref.Digest, func(ctx context.Context) error { return c.fetch(ctx, ref) })
			if errs[i] != nil {
				errs[i] = fmt.Errorf("preload %s: %w", ref.Digest, errs[i])
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops the fetches in flight, waits for them, closes the files the
// cache keeps open (readers still open keep theirs) and saves the usage
// history. It is idempotent; Open and Preload fail with ErrStoreClosed
// after it.
func (c *DiskCache) Close() error {
	c.closeOnce.Do(func() {
		c.flights.close()
		c.mu.Lock()
		c.closed = true
		if c.files != nil {
			c.files.Purge()
		}
		c.mu.Unlock()
		c.closeErr = c.Save()
	})
	return c.closeErr
}

// servesVerified marks stores whose readers need no verification: a
// DiskCache serves only files it verified before admitting them.
func (c *DiskCache) servesVerified() {}
