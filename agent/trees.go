package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// treeCache keeps unpacked packages by digest in a directory shared by the
// agents of a node. A tree is built in a temporary directory, made
// read-only and renamed into place, so other agents see it whole or not at
// all. An instance gets its own copy, so evicting a tree never disturbs a
// running function, and a function cannot change the code a later instance
// gets: files are copied, or hard-linked when link is set, which the agent
// does only when functions run as another user than the owner of the cached
// files (Config.RunAs), who then cannot write to them nor make them
// writable.
type treeCache struct {
	dir  string
	max  int
	log  *slog.Logger
	link bool
}

// tmpPrefix starts the names of trees being built; stale ones (from an agent
// that died while building) are removed after tmpMaxAge.
const (
	tmpPrefix = ".tmp-"
	tmpMaxAge = time.Hour
)

// materialize fills dst (an empty directory) with the tree of digest: from
// the cache when it has it (hit), else by calling unpack on a fresh
// directory that is then added to the cache. When the cached tree cannot be
// linked (evicted meanwhile), it unpacks into dst directly.
func (c *treeCache) materialize(ctx context.Context, digest, dst string, unpack func(ctx context.Context, into string) error) (hit bool, err error) {
	final := filepath.Join(c.dir, strings.TrimPrefix(digest, "sha256:"))
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		if err := copyTree(final, dst, c.link); err == nil {
			now := time.Now()
			_ = os.Chtimes(final, now, now) // recency for eviction
			return true, nil
		}
		c.log.Debug("tree cache: cached tree unusable, unpacking again", "digest", digest, "err", err)
		if err := emptyDir(dst); err != nil {
			return false, err
		}
	}
	tmp, err := os.MkdirTemp(c.dir, tmpPrefix)
	if err != nil {
		return false, unpack(ctx, dst) // cache unwritable: work without it
	}
	if err := unpack(ctx, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return false, err
	}
	if err := freezeTree(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return false, fmt.Errorf("tree cache: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another agent put the same tree in place first; use theirs.
		_ = os.RemoveAll(tmp)
	}
	if err := copyTree(final, dst, c.link); err != nil {
		if err := emptyDir(dst); err != nil {
			return false, err
		}
		return false, unpack(ctx, dst)
	}
	c.evict()
	return false, nil
}

// evict removes the least recently used trees beyond the cache's size, and
// temporary trees abandoned by agents that died while building them.
func (c *treeCache) evict() {
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type tree struct {
		name string
		used time.Time
	}
	var trees []tree
	for _, de := range des {
		fi, err := de.Info()
		if err != nil || !fi.IsDir() {
			continue
		}
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			if time.Since(fi.ModTime()) > tmpMaxAge {
				_ = os.RemoveAll(filepath.Join(c.dir, de.Name()))
			}
			continue
		}
		trees = append(trees, tree{de.Name(), fi.ModTime()})
	}
	if len(trees) <= c.max {
		return
	}
	slices.SortFunc(trees, func(a, b tree) int { return a.used.Compare(b.used) })
	for _, t := range trees[:len(trees)-c.max] {
		// Rename first so that no agent links a half-removed tree.
		victim := filepath.Join(c.dir, tmpPrefix+"evict-"+t.name)
		if os.Rename(filepath.Join(c.dir, t.name), victim) == nil {
			_ = os.RemoveAll(victim)
		}
	}
}

// freezeTree removes the write bits of the files below dir (directories
// stay writable, so the tree can be removed).
func freezeTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(p, fi.Mode().Perm()&^0o222)
	})
}

// copyTree recreates the tree src in dst: directories made, symlinks
// recreated, regular files copied, or hard-linked when link is set (and
// copied anyway across file systems).
func copyTree(src, dst string, link bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular() && link:
			if err := os.Link(p, target); err == nil {
				return nil
			} else if !errors.Is(err, syscall.EXDEV) {
				return err
			}
			return copyFile(p, target)
		case d.Type().IsRegular():
			return copyFile(p, target)
		default:
			return fmt.Errorf("tree cache: unexpected file %s", p)
		}
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	// *os.File to *os.File: copy_file_range on Linux, which shares blocks
	// on file systems with reflinks.
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// emptyDir removes everything below dir, keeping dir.
func emptyDir(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return err
		}
	}
	return nil
}
