package faas_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/faasplane/faas/faastest"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// A Dataplane needs a PodProvider and a code.Store; here the in-memory ones
// of the warmpool and code packages stand in for pods/local (or your own
// provider) and your package origin.
func Example() {
	ctx := context.Background()
	pods := faastest.NewPodProvider(faastest.PodProviderConfig{})
	store := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	ref := store.Add([]byte("a code package"))
	ref.URI = "mem://hello"

	dp, err := faas.New(faas.Config{
		Pods: pods,
		Code: store,
		Pool: warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 0, Max: 4}}, ProbeInterval: -1},
	})
	if err != nil {
		panic(err)
	}
	if err := dp.Start(ctx); err != nil {
		panic(err)
	}
	defer dp.Close()

	err = dp.Deploy(ctx, faas.FunctionSpec{ID: "hello", Runtime: "go", Code: ref, Concurrency: 8})
	fmt.Println("deploy:", err)
	fmt.Println("functions:", dp.Functions())

	// Unknown functions and bad specs get typed errors.
	_, err = dp.Invoke(ctx, &faas.Request{FunctionID: "nope"})
	fmt.Println("invoke nope is function_not_found:", errors.Is(err, lifecycle.CodeFunctionNotFound))
	err = dp.Deploy(ctx, faas.FunctionSpec{ID: "bad id", Runtime: "go", Code: ref})
	var se *faas.SpecError
	fmt.Println("bad spec:", errors.As(err, &se), se.Fields[0].Field)
	// Output:
	// deploy: <nil>
	// functions: [hello]
	// invoke nope is function_not_found: true
	// bad spec: true ID
}

// FunctionSpec.Validate reports every invalid field at once.
func ExampleFunctionSpec_Validate() {
	err := faas.FunctionSpec{ID: "resize", MinInstances: 5, MaxInstances: 2}.Validate()
	var se *faas.SpecError
	if errors.As(err, &se) {
		for _, f := range se.Fields {
			fmt.Println(f.Field)
		}
	}
	// Output:
	// Runtime
	// Code
	// MinInstances
}
