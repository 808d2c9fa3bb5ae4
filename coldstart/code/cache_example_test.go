package code_test

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/faasplane/faas/faastest"

	"github.com/faasplane/faas/coldstart/code"
)

// A node-local cache in front of an origin: the first Open fetches and
// verifies the package, the next ones are served from disk.
func ExampleDiskCache() {
	dir, err := os.MkdirTemp("", "code-cache")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	origin := faastest.NewCodeStore(faastest.CodeStoreConfig{}) // stands for a directory or HTTP store
	ref := origin.Add([]byte("#!/bin/sh\necho hello\n"))

	cache, err := code.NewDiskCache(code.CacheConfig{Dir: dir, MaxBytes: 1 << 30}, origin)
	if err != nil {
		panic(err)
	}
	defer cache.Close()

	for range 2 {
		rc, err := cache.Open(context.Background(), ref)
		if err != nil {
			panic(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		fmt.Printf("%d bytes\n", len(b))
	}
	s := cache.Stats()
	fmt.Println("hits:", s.Hits, "misses:", s.Misses, "holds it:", cache.Has(ref.Digest))
	// Output:
	// 21 bytes
	// 21 bytes
	// hits: 1 misses: 1 holds it: true
}
