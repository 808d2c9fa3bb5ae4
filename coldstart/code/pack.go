package code

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// PackDir packs the directory dir into a code package: a .tar.gz of its
// files, directories and relative symlinks, with the manifest (faas.json)
// at its root, which must be valid. The package is reproducible: entries in
// lexical order, owned by nobody, with fixed times and modes reduced to
// 0755 or 0644, so that the same tree always has the same digest
// ([RefFor]). Files other than regular ones, directories and symlinks are
// refused, as is a symlink that is absolute or leaves dir, since the agent
// would refuse the package.
func PackDir(dir string) ([]byte, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	epoch := time.Unix(0, 0)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		hdr := &tar.Header{Name: name, ModTime: epoch, Format: tar.FormatPAX}
		switch t := d.Type(); {
		case t.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			return tw.WriteHeader(hdr)
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) || !filepath.IsLocal(filepath.Join(filepath.Dir(rel), target)) {
				return fmt.Errorf("code: pack %s: symlink %s -> %s leaves the package", dir, name, target)
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, filepath.ToSlash(target), 0o777
			return tw.WriteHeader(hdr)
		case t.IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, int64(len(body)), 0o644
			if info.Mode()&0o111 != 0 {
				hdr.Mode = 0o755
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			_, err = tw.Write(body)
			return err
		default:
			return fmt.Errorf("code: pack %s: %s is not a regular file, directory or symlink", dir, name)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PackGo builds the Go main package pkg (an import path, or a directory
// such as "./functions/resize", resolved in the current module) with the go
// command on PATH, statically and reproducibly (CGO_ENABLED=0, -trimpath,
// stripped), and packs the binary with a faas.json whose command runs it:
// m's, with Command set to the binary when it is empty. It is what a
// platform's build step or a test does to turn a Go function, written with
// package function, into a code package.
func PackGo(ctx context.Context, pkg string, m Manifest) ([]byte, error) {
	dir, err := os.MkdirTemp("", "faas-pack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	name := "function"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, name), pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("code: go build %s: %w\n%s", pkg, err, stderr.String())
	}
	if m.Command == "" {
		m.Command = "./" + name
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), manifest, 0o644); err != nil {
		return nil, err
	}
	return PackDir(dir)
}
