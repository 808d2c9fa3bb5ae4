// Package fnbuild builds Go functions into code packages: it compiles a main
// package with the go command and packs the binary with a faas.json manifest
// into a .tar.gz. The quickstart, the end-to-end tests and the benchmarks use
// it to get real functions from examples/functions without any toolchain but
// Go.
package fnbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/faasplane/faas/coldstart/code"
)

// Build compiles the main package pkg (an import path, or a directory
// relative to the current module such as "./examples/functions/hello") into
// dir/name and returns the binary's path.
func Build(ctx context.Context, pkg, dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	// Stripped and path-free: smaller packages, reproducible builds.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("fnbuild: go build %s: %w\n%s", pkg, err, stderr.Bytes())
	}
	return out, nil
}

// ExamplePackage is the import path of the example function name (hello,
// sleep, flaky-init).
func ExamplePackage(name string) string {
	return "github.com/faasplane/faas/examples/functions/" + name
}

// BuildExamples builds the example functions names into dir, each as
// dir/<name>; tests call it once in TestMain.
func BuildExamples(ctx context.Context, dir string, names ...string) error {
	for _, name := range names {
		if _, err := Build(ctx, ExamplePackage(name), dir, name); err != nil {
			return err
		}
	}
	return nil
}

// Pack returns a .tar.gz holding the binary at bin (as ./name, executable)
// and a faas.json whose command runs it. level is a compress/gzip level;
// gzip.BestSpeed keeps packing fast while still exercising decompression.
func Pack(bin, name string, m code.Manifest, level int) ([]byte, error) {
	if m.Command == "" {
		m.Command = "./" + name
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{{"faas.json", 0o644, manifest}, {name, 0o755, exe}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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

// BuildPackage builds pkg, packs it as name, writes the package to
// dir/name.tar.gz and returns it with a file:// reference.
func BuildPackage(ctx context.Context, pkg, name, dir string) (Function, error) {
	bin, err := Build(ctx, pkg, filepath.Join(dir, "bin"), name)
	if err != nil {
		return Function{}, err
	}
	b, err := Pack(bin, name, code.Manifest{}, gzip.BestSpeed)
	if err != nil {
		return Function{}, err
	}
	path, err := filepath.Abs(filepath.Join(dir, name+".tar.gz"))
	if err != nil {
		return Function{}, err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return Function{}, err
	}
	return Function{Name: name, Path: path, Ref: code.RefFor("file://"+path, b), Bytes: b}, nil
}
