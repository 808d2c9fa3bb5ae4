package code_test

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/faasplane/faas/faastest"

	"github.com/faasplane/faas/coldstart/code"
)

// Local disk cache → shared cache → origin: a miss everywhere but at the
// origin fills both caches on the way.
func ExampleTiered() {
	dir, err := os.MkdirTemp("", "code-tiered")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	local, err := code.NewDiskCache(code.CacheConfig{Dir: dir, MaxBytes: 1 << 30}, nil)
	if err != nil {
		panic(err)
	}
	defer local.Close()
	shared := faastest.NewCodeStore(faastest.CodeStoreConfig{}) // e.g. an HTTP cache that accepts uploads
	origin := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	ref := origin.Add([]byte("function code"))

	store, err := code.NewTiered(code.TieredConfig{Tiers: []code.Store{local, shared, origin}})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	rc, err := store.Open(context.Background(), ref)
	if err != nil {
		panic(err)
	}
	b, err := io.ReadAll(rc) // a reader from the tiered store is verified
	rc.Close()
	fmt.Println(string(b), err)
	fmt.Println("local:", local.Has(ref.Digest), "shared:", shared.Has(ref.Digest))

	_, err = store.Open(context.Background(), code.Ref{URI: "x", Size: 1})
	fmt.Println(err != nil)
	// Output:
	// function code <nil>
	// local: true shared: true
	// true
}
