package conformance_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/faasplane/faas/runtimes"
	"github.com/faasplane/faas/runtimes/conformance"
)

// Start drives a bootstrap as an agent does: here the shipped Python
// runtime, started and loaded with its conformance fixture. A runtime's own
// test calls conformance.Run instead, which checks every clause.
func ExampleStart() {
	dir, _ := os.MkdirTemp("", "conformance-")
	defer os.RemoveAll(dir)
	rt, _ := runtimes.Builtin("python")
	cmd, err := rt.Install(context.Background(), filepath.Join(dir, "runtime"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := conformance.Start(ctx, conformance.Runtime{Name: "python", Path: cmd.Path, Args: cmd.Args, Env: cmd.Env}, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Kill()
	fmt.Println(b.Ready.Type, b.Ready.Runtime, b.Ready.Protocol)
	fixture, _ := filepath.Abs("../python/testdata/fixture")
	ev, err := b.Load(ctx, conformance.Load{FunctionID: "example", CodeDir: fixture, Entry: "app.py:handler", Env: map[string]string{}})
	fmt.Println(ev.Type, err)
	// Output:
	// ready python http1
	// loaded <nil>
}
