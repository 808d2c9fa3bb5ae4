package code_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/faasplane/faas/coldstart/code"
)

// A function's files and its faas.json become a code package; its Ref (the
// digest and size, with where it will be stored) is what a FunctionSpec
// names.
func ExamplePackDir() {
	dir, _ := os.MkdirTemp("", "fn")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "faas.json"), []byte(`{"command": "./serve.sh"}`), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "serve.sh"), []byte("#!/bin/sh\nexec python3 -m http.server \"$PORT\"\n"), 0o755)

	pkg, err := code.PackDir(dir)
	if err != nil {
		panic(err)
	}
	again, _ := code.PackDir(dir)
	ref := code.RefFor("https://code.example.com/serve.tar.gz", pkg)
	fmt.Println(ref.Size == int64(len(pkg)), ref.Digest == code.DigestOf(again))
	// Output: true true
}
