package faastest

import (
	"github.com/faasplane/faas/loadshed"
)

// Scenario defaults of [ClusterConfig].
const (
	// FunctionsPerDataplane is how many functions one dataplane node
	// owns in a cluster sized by ClusterConfig.
	FunctionsPerDataplane = 10_000
	// MinDataplanes is the smallest cluster's dataplane count: three, so
	// that losing one leaves a majority.
	MinDataplanes = 3
	// FunctionsPerNode is how many functions share one worker node.
	FunctionsPerNode = 100
	// DataplaneCapacity is the requests in flight one dataplane node's
	// proxy holds before it is overloaded: the shedder's capacity.
	DataplaneCapacity = 10_000
	// ClusterParallelCreates is each dataplane's bound on pod creations
	// in flight: 16 per warm-pool manager, so that a cluster of n
	// dataplanes creates up to 16n pods a second at the default 1 s
	// creation time.
	ClusterParallelCreates = 16
	// ClusterColdStarts is each dataplane's bound on cold starts in
	// flight.
	ClusterColdStarts = 256
	// ClusterPoolMax is each warm pool's largest target.
	ClusterPoolMax = 200
)

// ClusterConfig returns the scenario defaults for a cluster sized for the
// given number of functions, where [Config]'s own defaults are those of
// one faas.Dataplane with every package default (one dataplane node, 8
// worker nodes, 4 pod creations at once, an adaptive shedder). A
// production platform that hosts 100,000 functions does not run them on
// one dataplane that creates 4 pods at a time: a cold-start storm across
// them would be throttled by the pod creations, not by anything a policy
// decides, and the adaptive shedder, whose latency samples include the
// time spent behind cold starts, sheds an ordinary run. Here instead:
//
//   - one dataplane node per FunctionsPerDataplane functions, at least
//     MinDataplanes, each with its own shedder, cold-start bound
//     (ClusterColdStarts) and warm pools (up to ClusterPoolMax idle pods,
//     ClusterParallelCreates creations at once);
//   - shedders with a fixed capacity of DataplaneCapacity requests in
//     flight (and the queueing-delay signal), so that only an overload
//     sheds;
//   - one worker node per FunctionsPerNode functions, at least 8.
//
// Fill in the functions, the policies and the rest as usual; every field
// set here may be overridden. The report's Decided says whether a limit
// still decided the outcome.
func ClusterConfig(functions int) Config {
	functions = max(functions, 1)
	return Config{
		Dataplanes:         max(MinDataplanes, (functions+FunctionsPerDataplane-1)/FunctionsPerDataplane),
		Code:               CodeConfig{Nodes: max(8, (functions+FunctionsPerNode-1)/FunctionsPerNode)},
		MaxParallelCreates: ClusterParallelCreates,
		MaxColdStarts:      ClusterColdStarts,
		Runtimes:           map[string]RuntimeSpec{"default": {Min: 1, Max: ClusterPoolMax}},
		Shedder: func() (*loadshed.Shedder, error) {
			return loadshed.New(loadshed.Config{Capacity: DataplaneCapacity})
		},
	}
}
