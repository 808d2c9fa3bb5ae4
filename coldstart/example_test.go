package coldstart_test

import (
	"context"
	"fmt"
	"time"

	"github.com/faasplane/faas/faastest"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// fakeAgent stands for *lifecycle.Client talking to real agents.
type fakeAgent struct{}

func (fakeAgent) Load(_ context.Context, _ lifecycle.Control, req lifecycle.LoadRequest) (lifecycle.LoadResponse, error) {
	return lifecycle.LoadResponse{FunctionID: req.FunctionID, Timings: lifecycle.Timings{FetchMillis: 3}}, nil
}

func (fakeAgent) Initialize(_ context.Context, _ lifecycle.Control, req lifecycle.InitializeRequest) (lifecycle.InitializeResponse, error) {
	return lifecycle.InitializeResponse{FunctionID: req.FunctionID, Attempts: 1}, nil
}

// A Starter takes warm pods from a warmpool.Manager and makes them instances
// of a function; concurrent requests for capacity collapse into the number
// of cold starts asked for.
func ExampleStarter_Ensure() {
	provider := faastest.NewPodProvider(faastest.PodProviderConfig{})
	pool, err := warmpool.New(provider, warmpool.Config{
		Runtimes:      map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 8}},
		ProbeInterval: -1, // the static provider's pods run no agent to probe
	})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	starter, err := coldstart.New(pool, fakeAgent{} /* in production: &lifecycle.Client{} */, coldstart.Config{}, coldstart.Hooks{
		OnColdStart: func(r coldstart.Report) {
			fmt.Printf("cold start of %s: fetch %v, error %v\n", r.FunctionID, r.Breakdown.Fetch, r.Err)
		},
	})
	if err != nil {
		panic(err)
	}
	defer starter.Close()

	fn := coldstart.Function{
		ID:      "orders/resize",
		Runtime: "go",
		Code: lifecycle.CodeRef{
			URI:    "https://code.example.com/resize.tar.gz",
			Digest: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Size:   4096,
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := starter.Ensure(ctx, fn, 1)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Instance.FunctionID, res.Instance.State())
	// Output:
	// cold start of orders/resize: fetch 3ms, error <nil>
	// orders/resize Ready
}
