// Package testenv builds what the module's end-to-end tests and examples
// run for real: the faas-agent binary that pods/local starts as each pod,
// and functions packed as code packages, in one go command so that the
// build cache serves every later run.
//
// A test builds once per test binary with [Build], packs each function
// binary with [Pack] into a directory that a code.NewOrigin store serves
// (file:// references), and hands the agent's path to
// pods/local.Config.AgentPath. Nothing here fakes anything: the binaries
// are the ones a deployment runs.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"

	"github.com/faasplane/faas/coldstart/code"
)

// Import paths of the binaries the tests build.
const (
	AgentPackage = "github.com/faasplane/faas/cmd/faas-agent"
	HelloPackage = "github.com/faasplane/faas/examples/functions/hello"
)

// Build builds the Go main packages pkgs (import paths) into dir with one
// go command, statically (CGO_ENABLED=0), and returns the binaries' paths
// in the order of pkgs; a binary is named after the last element of its
// package's path.
func Build(ctx context.Context, dir string, pkgs ...string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	args := append([]string{"build", "-trimpath", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("testenv: go build %v: %w\n%s", pkgs, err, stderr.Bytes())
	}
	out := make([]string, len(pkgs))
	for i, p := range pkgs {
		out[i] = filepath.Join(dir, path.Base(p))
	}
	return out, nil
}

// Pack packs the function binary bin as a code package dir/<name>.tar.gz,
// with a manifest whose command runs it (m's other fields are kept), and
// returns its reference, a file:// URI below dir.
func Pack(bin, dir string, m code.Manifest) (code.Ref, error) {
	name := filepath.Base(bin)
	tree := filepath.Join(dir, name+".d")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return code.Ref{}, fmt.Errorf("testenv: %w", err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return code.Ref{}, fmt.Errorf("testenv: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tree, name), b, 0o755); err != nil {
		return code.Ref{}, fmt.Errorf("testenv: %w", err)
	}
	m.Command = "./" + name
	mb, err := json.Marshal(m)
	if err != nil {
		return code.Ref{}, fmt.Errorf("testenv: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tree, "faas.json"), mb, 0o644); err != nil {
		return code.Ref{}, fmt.Errorf("testenv: %w", err)
	}
	pkg, err := code.PackDir(tree)
	if err != nil {
		return code.Ref{}, fmt.Errorf("testenv: %w", err)
	}
	out := filepath.Join(dir, name+".tar.gz")
	if err := os.WriteFile(out, pkg, 0o644); err != nil {
		return code.Ref{}, fmt.Errorf("testenv: %w", err)
	}
	return code.RefFor("file://"+out, pkg), nil
}
