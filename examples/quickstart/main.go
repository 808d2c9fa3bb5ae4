// Command quickstart is the README's first command. Until the Dataplane
// lands it demonstrates the sharding package, the layer that decides which
// dataplane node owns a function: it shards 100,000 function IDs over five
// weighted nodes, prints each node's share, removes one node and shows that
// only that node's functions moved, spread over all survivors.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/faasplane/faas/sharding"
)

func main() {
	functions := flag.Int("functions", 100_000, "number of function IDs to shard")
	flag.Parse()
	if err := run(os.Stdout, *functions); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, functions int) error {
	if functions <= 0 {
		return errors.New("-functions must be > 0")
	}
	nodes := []sharding.Node{
		{ID: "dp-a", Weight: 1},
		{ID: "dp-b", Weight: 1},
		{ID: "dp-c", Weight: 2},
		{ID: "dp-d", Weight: 2},
		{ID: "dp-e", Weight: 4},
	}
	table, err := sharding.New(nodes...)
	if err != nil {
		return err
	}
	ids := make([]string, functions)
	owner := make([]string, functions)
	for i := range ids {
		ids[i] = fmt.Sprintf("tenant-%d/fn-%d", i%97, i)
		n, _ := table.Pick(ids[i])
		owner[i] = n.ID
	}
	fmt.Fprintf(w, "Sharding %d functions over %d dataplane nodes with weighted rendezvous hashing\n\n", functions, len(nodes))
	if err := printSpread(w, nodes, owner); err != nil {
		return err
	}

	const removed = "dp-c"
	smaller, err := table.Remove(removed)
	if err != nil {
		return err
	}
	movedTo := map[string]int{}
	moved := 0
	for i, id := range ids {
		n, _ := smaller.Pick(id)
		if n.ID == owner[i] {
			continue
		}
		if owner[i] != removed {
			return fmt.Errorf("function %s moved from %s to %s although %s stayed", id, owner[i], n.ID, owner[i])
		}
		moved++
		movedTo[n.ID]++
	}
	had := 0
	for _, o := range owner {
		if o == removed {
			had++
		}
	}
	if moved != had {
		return fmt.Errorf("%s owned %d functions but %d moved", removed, had, moved)
	}
	fmt.Fprintf(w, "\nRemoved %s: %d of %d functions moved (%.1f%%), every one of them from %s.\n",
		removed, moved, functions, 100*float64(moved)/float64(functions), removed)
	fmt.Fprintln(w, "They spread over the survivors in proportion to weight (a ring would hand them all to one successor):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tweight\treceived\tshare\t")
	for _, n := range smaller.Nodes() {
		fmt.Fprintf(tw, "%s\t%g\t%d\t%.1f%%\t\n", n.ID, n.Weight, movedTo[n.ID], 100*float64(movedTo[n.ID])/float64(max(moved, 1)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nOK")
	return nil
}

func printSpread(w io.Writer, nodes []sharding.Node, owner []string) error {
	count := map[string]int{}
	for _, o := range owner {
		count[o]++
	}
	total := 0.0
	for _, n := range nodes {
		total += n.Weight
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tweight\tfunctions\tshare\texpected\tbar\t")
	for _, n := range nodes {
		share := float64(count[n.ID]) / float64(len(owner))
		fmt.Fprintf(tw, "%s\t%g\t%d\t%.2f%%\t%.2f%%\t%s\t\n", n.ID, n.Weight, count[n.ID], 100*share, 100*n.Weight/total,
			strings.Repeat("#", int(share*80+0.5)))
	}
	return tw.Flush()
}
