package code

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The usage history is a JSON file in the cache directory:
//
//	{"version":1,"entries":[{"digest":"sha256:…","size":123,"hits":4,"last_use":"2026-11-25T19:02:07Z"}]}
//
// It is a hint, not the truth: the files in blobs/sha256 are. At start the
// cache adopts every well-named file, takes its hits and last use from the
// history when the history agrees on its size, and otherwise uses the file's
// modification time. A damaged or foreign history is ignored with a warning.

// cacheIndexVersion is the history's format version.
const cacheIndexVersion = 1

// maxCacheIndexBytes bounds the history file that NewDiskCache reads; a
// larger file is ignored rather than loaded into memory. (A variable so
// that tests can lower it.)
var maxCacheIndexBytes = 64 << 20

type cacheIndexDoc struct {
	Version int               `json:"version"`
	Entries []cacheIndexEntry `json:"entries"`
}

type cacheIndexEntry struct {
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	Hits    int64     `json:"hits"`
	LastUse time.Time `json:"last_use"`
}

// errBadCacheIndex is wrapped by every error of parseCacheIndex.
var errBadCacheIndex = errors.New("code cache: bad usage history")

// parseCacheIndex parses a usage history. Entries with an invalid digest, a
// size <= 0 or negative hits are skipped; of two entries for one digest the
// one used last wins. An error means the whole file is unusable.
func parseCacheIndex(data []byte) (map[string]cacheEntry, error) {
	if len(data) > maxCacheIndexBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errBadCacheIndex, len(data), maxCacheIndexBytes)
	}
	var f cacheIndexDoc
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadCacheIndex, err)
	}
	if f.Version != cacheIndexVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errBadCacheIndex, f.Version, cacheIndexVersion)
	}
	out := make(map[string]cacheEntry, len(f.Entries))
	for _, e := range f.Entries {
		if ValidDigest(e.Digest) != nil || e.Size <= 0 || e.Hits < 0 {
			continue
		}
		if old, ok := out[e.Digest]; ok && !e.LastUse.After(old.lastUse) {
			continue
		}
		out[e.Digest] = cacheEntry{size: e.Size, hits: e.Hits, lastUse: e.LastUse}
	}
	return out, nil
}

// encodeCacheIndex encodes entries, given oldest first.
func encodeCacheIndex(digests []string, entries []cacheEntry) ([]byte, error) {
	f := cacheIndexDoc{Version: cacheIndexVersion, Entries: make([]cacheIndexEntry, len(digests))}
	for i, d := range digests {
		e := entries[i]
		f.Entries[i] = cacheIndexEntry{Digest: d, Size: e.size, Hits: e.hits, LastUse: e.lastUse.UTC()}
	}
	return json.Marshal(f)
}

// load adopts the packages on disk in the order of the usage history, and
// deletes stale temporary files and the packages beyond the budget.
func (c *DiskCache) load() error {
	usage := map[string]cacheEntry{}
	if data, err := readFileLimited(c.indexPath, int64(maxCacheIndexBytes)); err == nil {
		if u, err := parseCacheIndex(data); err == nil {
			usage = u
		} else {
			c.log.Warn("code cache: usage history ignored", "err", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn("code cache: usage history unreadable", "err", err)
	}
	c.removeStaleTemps()

	des, err := os.ReadDir(c.blobDir)
	if err != nil {
		return fmt.Errorf("code cache: %w", err)
	}
	type found struct {
		digest string
		e      cacheEntry
	}
	var all []found
	for _, de := range des {
		digest := DigestPrefix + de.Name()
		if !de.Type().IsRegular() || ValidDigest(digest) != nil {
			continue
		}
		fi, err := de.Info()
		if err != nil || fi.Size() <= 0 {
			continue
		}
		e, ok := usage[digest]
		switch {
		case ok && e.size != fi.Size():
			// The history was written after the package was verified: a
			// file of another size was damaged since.
			c.log.Warn("code cache: damaged file removed", "digest", digest, "size", fi.Size(), "want", e.size)
			_ = os.Remove(filepath.Join(c.blobDir, de.Name()))
			continue
		case !ok:
			e = cacheEntry{size: fi.Size(), lastUse: fi.ModTime()}
		}
		all = append(all, found{digest, e})
	}
	slices.SortFunc(all, func(a, b found) int {
		return cmp.Or(a.e.lastUse.Compare(b.e.lastUse), strings.Compare(a.digest, b.digest))
	})
	c.mu.Lock()
	for _, f := range all {
		e := f.e
		c.lru.Add(f.digest, &e)
		c.bytes += e.size
	}
	victims := c.evictLocked()
	c.mu.Unlock()
	c.remove(victims)
	return nil
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes", errBadCacheIndex, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes", errBadCacheIndex, limit)
	}
	return data, nil
}

// removeStaleTemps deletes temporary files old enough not to belong to a
// fetch in progress (a crashed process's leftovers).
func (c *DiskCache) removeStaleTemps() {
	des, err := os.ReadDir(c.tmpDir)
	if err != nil {
		return
	}
	cutoff := c.cfg.Clock.Now().Add(-cacheTmpMaxAge)
	for _, de := range des {
		if fi, err := de.Info(); err == nil && fi.ModTime().Before(cutoff) {
			_ = os.Remove(filepath.Join(c.tmpDir, de.Name()))
		}
	}
}

// Save writes the usage history to the cache directory (temporary file and
// atomic rename). The cache calls it after every admission and on Close;
// hits in between are saved with the next write.
func (c *DiskCache) Save() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	digests := c.lru.Keys() // oldest first
	entries := make([]cacheEntry, len(digests))
	for i, d := range digests {
		e, _ := c.lru.Peek(d)
		entries[i] = *e
	}
	c.mu.Unlock()
	data, err := encodeCacheIndex(digests, entries)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.tmpDir, "index.*.tmp")
	if err != nil {
		return fmt.Errorf("code cache: %w", err)
	}
	// No fsync: the history is a hint, and a damaged one is ignored.
	_, err = io.Copy(tmp, bytes.NewReader(data))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.indexPath)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("code cache: saving usage history: %w", err)
	}
	return nil
}
