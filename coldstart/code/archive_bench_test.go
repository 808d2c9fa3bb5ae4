package code

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchBinary returns n bytes that compress roughly like a Go binary (about
// 2:1): random bytes interleaved with runs of repeated text.
func benchBinary(n int) string {
	r := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, 0, n)
	for len(b) < n {
		chunk := make([]byte, 64)
		for i := range chunk {
			chunk[i] = byte(r.UintN(256))
		}
		b = append(b, chunk...)
		b = append(b, "runtime.gopanic runtime.mallocgc "...)
	}
	return string(b[:n])
}

// BenchmarkExtract unpacks a package shaped like a function: one 8 MiB
// binary and a manifest, as tar.gz and as zip (stored and deflated).
func BenchmarkExtract(b *testing.B) {
	entries := []pkgEntry{
		{Name: "faas.json", Body: `{"command":"./fn"}`},
		{Name: "fn", Body: benchBinary(8 << 20), Mode: 0o755},
	}
	for _, c := range []struct {
		name    string
		archive []byte
	}{
		{"tar.gz", pkgTarGz(b, entries...)},
		{"zip-store", pkgZip(b, zip.Store, entries...)},
		{"zip-deflate", pkgZip(b, zip.Deflate, entries...)},
	} {
		b.Run(c.name, func(b *testing.B) {
			work := b.TempDir()
			b.SetBytes(8 << 20)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				dst := filepath.Join(work, "d", string(rune('a'+i%26))+string(rune('a'+i/26%26)))
				_ = os.RemoveAll(dst)
				if err := os.MkdirAll(dst, 0o755); err != nil {
					b.Fatal(err)
				}
				if _, err := extract(context.Background(), bytes.NewReader(c.archive), int64(len(c.archive)), dst, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExtractTree unpacks packages of many small entries, where the
// cost is in the tree and not in the bytes: deep (1,000 files 64 levels
// down, the most MaxDepth allows: each used to cost a walk from the root)
// and wide (4,000 files over 40 directories), as tar.gz and as zip.
func BenchmarkExtractTree(b *testing.B) {
	var wide []pkgEntry
	for i := range 4000 {
		wide = append(wide, pkgEntry{Name: fmt.Sprintf("dir%02d/file%04d.js", i%40, i), Body: "x"})
	}
	var deep []pkgEntry
	prefix := strings.Repeat("d/", DefaultMaxDepth-1)
	for i := range 1000 {
		deep = append(deep, pkgEntry{Name: prefix + "f" + strconv.Itoa(i)})
	}
	for _, c := range []struct {
		name    string
		archive []byte
		entries int
	}{
		{"deep/tar.gz", deepTarGz(b, 1000, DefaultMaxDepth), 1000},
		{"deep/zip", pkgZip(b, zip.Store, deep...), 1000},
		{"wide/tar.gz", pkgTarGz(b, wide...), 4000},
		{"wide/zip", pkgZip(b, zip.Store, wide...), 4000},
	} {
		b.Run(c.name, func(b *testing.B) {
			work := b.TempDir()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				dst := filepath.Join(work, strconv.Itoa(i))
				if err := os.Mkdir(dst, 0o755); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				st, err := extract(context.Background(), bytes.NewReader(c.archive), int64(len(c.archive)), dst, Limits{})
				if err != nil || st.Entries != c.entries {
					b.Fatal(st, err)
				}
				b.StopTimer()
				_ = os.RemoveAll(dst)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.entries), "ns/entry")
		})
	}
}
