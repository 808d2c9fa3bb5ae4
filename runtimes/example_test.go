package runtimes_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/faasplane/faas/runtimes"
)

// The shipped runtimes, and how an agent gets the command of one: Install
// writes its files and checks its interpreter (the agent then starts the
// bootstrap with the pod, see RUNTIMES.md).
func ExampleRuntime_Install() {
	fmt.Println(runtimes.Names())
	rt, _ := runtimes.Builtin("python")
	dir, _ := os.MkdirTemp("", "runtime-")
	defer os.RemoveAll(dir)
	cmd, err := rt.Install(context.Background(), dir)
	if err != nil {
		fmt.Println(err) // no Python 3.9 or later on this machine
		return
	}
	fmt.Println(filepath.Base(cmd.Args[len(cmd.Args)-1]), cmd.Env)
	// Output:
	// [node python]
	// bootstrap.py [PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1]
}
