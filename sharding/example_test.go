package sharding_test

import (
	"fmt"
	"sync/atomic"

	"github.com/faasplane/faas/sharding"
)

// Pick names the dataplane node that owns a function's in-memory counters.
func ExampleTable_Pick() {
	nodes, err := sharding.New(
		sharding.Node{ID: "dp-1", Weight: 1},
		sharding.Node{ID: "dp-2", Weight: 1},
		sharding.Node{ID: "dp-3", Weight: 2}, // twice the capacity
	)
	if err != nil {
		panic(err)
	}
	owner, _ := nodes.Pick("orders/resize-image")
	fmt.Println("owner:", owner.ID)
	// Output: owner: dp-1
}

// Rank gives the preference list; when the owner is offline, the key goes
// to the next node on its list, and only the offline node's keys move.
func ExampleTable_Rank() {
	nodes := sharding.MustNew(
		sharding.Node{ID: "dp-1", Weight: 1},
		sharding.Node{ID: "dp-2", Weight: 1},
		sharding.Node{ID: "dp-3", Weight: 1},
	)
	var buf [3]sharding.Node // reused across calls: Rank does not allocate
	prefs := nodes.Rank("orders/resize-image", 3, buf[:0])
	fmt.Println("preference list:", prefs[0].ID, prefs[1].ID, prefs[2].ID)

	offline := map[string]bool{prefs[0].ID: true}
	fallback, _ := nodes.PickAvailable("orders/resize-image", func(n sharding.Node) bool { return offline[n.ID] })
	fmt.Println("owner offline, fallback:", fallback.ID)
	// Output:
	// preference list: dp-1 dp-2 dp-3
	// owner offline, fallback: dp-2
}

// Tables are immutable, so a holder publishes membership changes through an
// atomic.Pointer and readers never lock.
func ExampleTable_Add() {
	var current atomic.Pointer[sharding.Table]
	current.Store(sharding.MustNew(sharding.Node{ID: "dp-1", Weight: 1}))

	next, err := current.Load().Add(sharding.Node{ID: "dp-2", Weight: 1})
	if err != nil {
		panic(err)
	}
	current.Store(next)
	fmt.Println("nodes:", current.Load().Len())
	// Output: nodes: 2
}
