package code_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/faasplane/faas/coldstart/code"
)

// exampleTarGz builds a .tar.gz with the given files in memory.
func exampleTarGz(files map[string]string, names ...string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range names {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(files[name]))})
		_, _ = tw.Write([]byte(files[name]))
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

// Unpack fetches a package from a directory store, verifies its digest and
// size, and extracts it; the manifest then says what to run.
func ExampleUnpack() {
	origin, _ := os.MkdirTemp("", "origin")
	work, _ := os.MkdirTemp("", "work")
	defer os.RemoveAll(origin)
	defer os.RemoveAll(work)

	pkg := exampleTarGz(map[string]string{
		"faas.json": `{"command": "./hello", "init_path": "/_faas/init"}`,
		"hello":     "#!/bin/sh\necho hello\n",
	}, "faas.json", "hello")
	_ = os.WriteFile(filepath.Join(origin, "hello.tar.gz"), pkg, 0o644)

	store, _ := code.NewDirStore(origin)
	defer store.Close()
	ref := code.RefFor(store.URI("hello.tar.gz"), pkg) // URI, sha256 digest, size

	dst := filepath.Join(work, "fn")
	_ = os.Mkdir(dst, 0o755)
	st, err := code.Unpack(context.Background(), store, ref, dst, code.UnpackOptions{})
	fmt.Println(st.Entries, err)

	m, err := code.ReadManifest(dst)
	fmt.Println(m.Command, m.InitHookPath(), err)
	// Output:
	// 2 <nil>
	// ./hello /_faas/init <nil>
}

// An archive entry that climbs out of the destination is refused before
// anything is written for it.
func ExampleUnpack_zipSlip() {
	dst, _ := os.MkdirTemp("", "dst")
	defer os.RemoveAll(dst)
	evil := exampleTarGz(map[string]string{"../../etc/cron.d/x": "* * * * * root sh"}, "../../etc/cron.d/x")
	store := code.StoreFunc(func(context.Context, code.Ref) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(evil)), nil
	})

	_, err := code.Unpack(context.Background(), store, code.RefFor("mem://evil", evil), dst, code.UnpackOptions{})
	fmt.Println(errors.Is(err, code.ErrBadPackage))
	fmt.Println(err)
	// Output:
	// true
	// code: unsafe path in archive: entry "../../etc/cron.d/x": path has a ".." element
}
