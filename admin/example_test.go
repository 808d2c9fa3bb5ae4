package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/admin"
	"github.com/faasplane/faas/faastest"
)

// ExampleNew serves the status page of a Dataplane, here asked for its
// JSON form. An embedder mounts it on an admin listener:
//
//	http.ListenAndServe("127.0.0.1:9090", page)
func ExampleNew() {
	store := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	ref := store.Add([]byte("a function package"))
	ref.URI = "fake://resize"
	dp, err := faas.New(faas.Config{Pods: faastest.NewPodProvider(faastest.PodProviderConfig{}), Code: store})
	if err != nil {
		panic(err)
	}
	defer dp.Close()
	if err := dp.Deploy(context.Background(), faas.FunctionSpec{ID: "resize", Runtime: "go", Code: ref, MemoryBytes: 512 << 20}); err != nil {
		panic(err)
	}
	page, err := admin.New(dp, admin.Config{})
	if err != nil {
		panic(err)
	}
	rec := httptest.NewRecorder()
	page.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status.json", nil))
	var st admin.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		panic(err)
	}
	for _, f := range st.Functions {
		fmt.Printf("%s: %d MiB, %d instances, shedding %v\n", f.ID, f.MemoryBytes>>20, len(f.Instances), st.Shedding)
	}
	// Output: resize: 512 MiB, 0 instances, shedding false
}
