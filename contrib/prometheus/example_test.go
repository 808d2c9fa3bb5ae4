package prometheus_test

import (
	"context"
	"fmt"
	"slices"

	prom "github.com/prometheus/client_golang/prometheus"

	faas "github.com/faasplane/faas"
	faasprom "github.com/faasplane/faas/contrib/prometheus"
	"github.com/faasplane/faas/faastest"
)

// Example wires the metrics to a Dataplane and shows the bound on the
// function label: with MaxFunctions 1, the second and third functions
// share the series of "_other".
func Example() {
	m, err := faasprom.New(faasprom.Config{MaxFunctions: 1})
	if err != nil {
		panic(err)
	}
	store := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	ref := store.Add([]byte("a function package"))
	ref.URI = "fake://resize"
	dp, err := faas.New(faas.Config{Pods: faastest.NewPodProvider(faastest.PodProviderConfig{}), Code: store, Observer: m})
	if err != nil {
		panic(err)
	}
	defer dp.Close()
	for _, id := range []string{"resize", "thumbnail", "transcode"} {
		if err := dp.Deploy(context.Background(), faas.FunctionSpec{ID: id, Runtime: "go", Code: ref}); err != nil {
			panic(err)
		}
	}
	reg := prom.NewRegistry()
	reg.MustRegister(m, faasprom.NewStatsCollector(dp, m))
	fams, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	var labels []string
	for _, mf := range fams {
		if mf.GetName() != "faas_routable_instances" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels = append(labels, s.GetLabel()[0].GetValue())
		}
	}
	slices.Sort(labels)
	fmt.Println(labels)
	// Output: [_other resize]
}
