// Package fnbuild builds the example functions and the agent for the
// project's tests, benchmarks and the quickstart: many main packages in one
// go command (it links them in parallel, and loading the module once is
// most of a cached build's time), packed into code packages with
// code.PackDir.
package fnbuild

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

// ExamplePackage is the import path of the example function name (hello,
// sleep, flaky-init).
func ExamplePackage(name string) string {
	return "github.com/faasplane/faas/examples/functions/" + name
}

// BuildAll compiles the main packages pkgs (import paths or directories
// relative to the current module) into dir, each as dir/<last element of
// its path>, in one go command, static, stripped and path-free, and
// returns the binaries' paths in the order of pkgs.
func BuildAll(ctx context.Context, dir string, pkgs ...string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("fnbuild: go build %v: %w\n%s", pkgs, err, stderr.Bytes())
	}
	bins := make([]string, len(pkgs))
	for i, p := range pkgs {
		bins[i] = filepath.Join(dir, path.Base(filepath.ToSlash(p)))
	}
	return bins, nil
}

// BuildExamples builds the example functions names into dir, each as
// dir/<name>; tests call it once in TestMain.
func BuildExamples(ctx context.Context, dir string, names ...string) error {
	pkgs := make([]string, len(names))
	for i, n := range names {
		pkgs[i] = ExamplePackage(n)
	}
	_, err := BuildAll(ctx, dir, pkgs...)
	return err
}

// Function is a built and packed function.
type Function struct {
	Name string
	// Path is the package file; Ref references it with a file:// URI.
	Path string
	Ref  code.Ref
	// Bytes is the package's content.
	Bytes []byte
}

// PackBinary packs the binary bin as ./name with a faas.json that runs it
// (m's, with Command set when empty), writes the package to
// dir/name.tar.gz and returns it with a file:// reference.
func PackBinary(bin, name string, m code.Manifest, dir string) (Function, error) {
	tree, err := os.MkdirTemp("", "fnbuild-")
	if err != nil {
		return Function{}, err
	}
	defer os.RemoveAll(tree)
	if m.Command == "" {
		m.Command = "./" + name
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return Function{}, err
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return Function{}, err
	}
	if err := os.WriteFile(filepath.Join(tree, code.ManifestName), manifest, 0o644); err != nil {
		return Function{}, err
	}
	if err := os.WriteFile(filepath.Join(tree, name), exe, 0o755); err != nil {
		return Function{}, err
	}
	b, err := code.PackDir(tree)
	if err != nil {
		return Function{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Function{}, err
	}
	p, err := filepath.Abs(filepath.Join(dir, name+".tar.gz"))
	if err != nil {
		return Function{}, err
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return Function{}, err
	}
	return Function{Name: name, Path: p, Ref: code.RefFor("file://"+p, b), Bytes: b}, nil
}

// BuildPackages builds the example functions names and packs each into
// dir/<name>.tar.gz.
func BuildPackages(ctx context.Context, dir string, names ...string) (map[string]Function, error) {
	pkgs := make([]string, len(names))
	for i, n := range names {
		pkgs[i] = ExamplePackage(n)
	}
	bins, err := BuildAll(ctx, filepath.Join(dir, "bin"), pkgs...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Function, len(names))
	for i, n := range names {
		if out[n], err = PackBinary(bins[i], n, code.Manifest{}, dir); err != nil {
			return nil, err
		}
	}
	return out, nil
}
