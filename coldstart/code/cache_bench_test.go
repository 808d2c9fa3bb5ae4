package code

import (
	"context"
	"io"
	"testing"
)

// BenchmarkDiskCacheHit measures Open and Close of a cached package: the
// index lookup, the LRU update and the file open (target ≤ 20 µs).
func BenchmarkDiskCacheHit(b *testing.B) {
	origin := newFakeStore()
	ref := origin.Add(ctBytes(1<<20, 1))
	c, err := NewDiskCache(CacheConfig{Dir: b.TempDir(), MaxBytes: 1 << 30}, origin)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	rc, err := c.Open(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	_ = rc.Close()
	b.ReportAllocs()
	for b.Loop() {
		rc, err := c.Open(ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		_ = rc.Close()
	}
}

// BenchmarkDiskCacheHitParallel is BenchmarkDiskCacheHit from every core.
func BenchmarkDiskCacheHitParallel(b *testing.B) {
	origin := newFakeStore()
	ref := origin.Add(ctBytes(1<<20, 1))
	c, err := NewDiskCache(CacheConfig{Dir: b.TempDir(), MaxBytes: 1 << 30}, origin)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	rc, err := c.Open(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	_ = rc.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rc, err := c.Open(ctx, ref)
			if err != nil {
				b.Error(err)
				return
			}
			_ = rc.Close()
		}
	})
}

// BenchmarkTieredHit measures an Open through a tiered store whose first
// tier (a DiskCache) has the package.
func BenchmarkTieredHit(b *testing.B) {
	local, err := NewDiskCache(CacheConfig{Dir: b.TempDir(), MaxBytes: 1 << 30}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	origin := newFakeStore()
	ref := origin.Add(ctBytes(1<<20, 1))
	s, err := NewTiered(TieredConfig{Tiers: []Store{local, origin}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rc, err := s.Open(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	_ = rc.Close()
	b.ReportAllocs()
	for b.Loop() {
		rc, err := s.Open(ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		_ = rc.Close()
	}
}

// BenchmarkDiskCacheMiss measures a miss of a 64 KiB package: fetch from an
// in-memory origin, verification, temp file, fsync, rename, index save.
// Each iteration drops the package from the index and from disk (damaged),
// so that Open cannot adopt the file and every iteration is a real miss.
func BenchmarkDiskCacheMiss(b *testing.B) {
	origin := newFakeStore()
	data := ctBytes(64<<10, 1)
	ref := origin.Add(data)
	c, err := NewDiskCache(CacheConfig{Dir: b.TempDir(), MaxBytes: 1 << 30}, origin)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	n := 0
	for b.Loop() {
		c.damaged(ref.Digest)
		rc, err := c.Open(ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		_ = rc.Close()
		n++
	}
	if s := c.Stats(); s.Misses != int64(n) || s.Hits != 0 {
		b.Fatalf("%d iterations: %d misses, %d hits; want every iteration a miss", n, s.Misses, s.Hits)
	}
}

// BenchmarkDiskCacheHitUncachedFile is BenchmarkDiskCacheHit with no file
// kept open (MaxOpenFiles < 0): every hit opens, checks and closes the
// file.
func BenchmarkDiskCacheHitUncachedFile(b *testing.B) {
	origin := newFakeStore()
	ref := origin.Add(ctBytes(1<<20, 1))
	c, err := NewDiskCache(CacheConfig{Dir: b.TempDir(), MaxBytes: 1 << 30, MaxOpenFiles: -1}, origin)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	rc, err := c.Open(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	_ = rc.Close()
	b.ReportAllocs()
	for b.Loop() {
		rc, err := c.Open(ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		_ = rc.Close()
	}
}
