package runtimes_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/faasplane/faas/runtimes"
	"github.com/faasplane/faas/runtimes/conformance"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if agentDir != "" {
		_ = os.RemoveAll(agentDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// install installs the shipped runtime name; a missing or too old
// interpreter fails the test (Python 3.9+ and Node.js 18+ are
// requirements of the test suite, like Go).
func install(t *testing.T, name string) runtimes.Command {
	t.Helper()
	rt, ok := runtimes.Builtin(name)
	if !ok {
		t.Fatalf("no runtime %q", name)
	}
	cmd, err := rt.Install(context.Background(), filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatalf("runtime %s cannot be installed (its interpreter is a requirement of the tests): %v", name, err)
	}
	return cmd
}

func TestPythonConformance(t *testing.T) {
	cmd := install(t, "python")
	conformance.Run(t, conformance.Runtime{Name: "python", Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Fixture: "python/testdata/fixture"})
}

func TestNodeConformance(t *testing.T) {
	cmd := install(t, "node")
	conformance.Run(t, conformance.Runtime{Name: "node", Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Fixture: "node/testdata/fixture"})
}
