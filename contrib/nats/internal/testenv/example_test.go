package testenv_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/contrib/nats/internal/testenv"
)

// Pack turns a function binary into a code package whose manifest runs
// it, and returns the reference to deploy it with. (A test builds the
// binary with Build first; any file will do to show the packing.)
func ExamplePack() {
	dir, err := os.MkdirTemp("", "testenv-example-*")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "greeter")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		log.Fatal(err)
	}
	ref, err := testenv.Pack(bin, dir, code.Manifest{Env: map[string]string{"GREETING": "hello"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(ref.URI), strings.HasPrefix(ref.Digest, code.DigestPrefix), ref.Size > 0)
	// Output: greeter.tar.gz true true
}
