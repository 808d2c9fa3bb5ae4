package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// nodeKind is what a path of the extracted tree is.
type nodeKind uint8

const (
	nodeDir nodeKind = iota
	nodeFile
	nodeLink
)

// node is what Extract knows of one path it wrote. The checks run against
// this model, not against what the file system says of a path: what an
// entry may do depends only on the entries before it, and a check costs no
// system call. (Something on disk the model does not know of is refused as
// a conflict when it gets in the way; see mkdir.)
type node struct {
	name     string
	parent   *node
	kind     nodeKind
	implied  bool             // a directory created as a parent and not named by an entry
	children map[string]*node // directories only
	target   string           // symlinks only

	// An open handle on the directory, nil when not cached. Handles of
	// directories below the root sit in the treeWriter's LRU list.
	handle     *os.Root
	prev, next *node
}

// path returns the node's slash-separated path below the root.
func (n *node) path() string {
	if n.parent == nil {
		return "."
	}
	var elems []string
	for ; n.parent != nil; n = n.parent {
		elems = append(elems, n.name)
	}
	return reversedPath(elems)
}

// add puts a new node name of the given kind into the directory dir.
func (w *treeWriter) add(dir *node, name string, kind nodeKind) *node {
	c := &node{name: name, parent: dir, kind: kind}
	if kind == nodeDir {
		c.children = map[string]*node{}
	}
	dir.children[name] = c
	w.folded[foldKey{dir, strings.ToLower(name)}] = c
	return c
}

// remove takes the node c, just added, out of the model again.
func (w *treeWriter) remove(c *node) {
	delete(c.parent.children, c.name)
	if k := (foldKey{c.parent, strings.ToLower(c.name)}); w.folded[k] == c {
		delete(w.folded, k)
	}
}

func newTreeWriter(ctx context.Context, root *os.Root, lim Limits, archiveSize int64) *treeWriter {
	return &treeWriter{ctx: ctx, lim: lim, archiveSize: archiveSize,
		tree:   &node{kind: nodeDir, children: map[string]*node{}, handle: root},
		folded: map[foldKey]*node{}}
}

// parentOf returns the directory node that holds the clean path name,
// creating the missing parent directories (each counted against
// MaxFiles), and the last element of name. A parent that is a link or a
// file refuses the entry: nothing is ever written through a link.
func (w *treeWriter) parentOf(rawName, name string) (*node, string, error) {
	dir := w.tree
	for {
		elem, rest, more := strings.Cut(name, "/")
		if !more {
			return dir, elem, nil
		}
		c := dir.children[elem]
		switch {
		case c == nil:
			w.implied++
			if err := w.checkCount(rawName); err != nil {
				return nil, "", err
			}
			if err := w.mkdir(rawName, dir, elem); err != nil {
				return nil, "", err
			}
			c = w.add(dir, elem, nodeDir)
			c.implied = true
		case c.kind == nodeLink:
			return nil, "", reject(rawName, errUnsafePath, "path lies beneath the symlink %q", short(c.path()))
		case c.kind == nodeFile:
			return nil, "", reject(rawName, errDuplicateEntry, "parent %q is a file", short(c.path()))
		}
		dir, name = c, rest
	}
}

// mkdir creates the directory elem in dir on disk. Something already
// there that the model does not know of is a conflict: either dst was not
// empty or the file system folds case ("Lib" is "lib"), and in both cases
// the model would no longer say what is on disk.
func (w *treeWriter) mkdir(rawName string, dir *node, elem string) error {
	h, err := w.handle(dir)
	if err != nil {
		return err
	}
	if err := h.Mkdir(elem, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return reject(rawName, errDuplicateEntry, "%q already exists on disk (dst not empty, or a case-insensitive file system)", short(elem))
		}
		return reject(rawName, errDuplicateEntry, "directory: %v", err)
	}
	return nil
}

// lookup returns the node at the clean path name, nil if there is none or
// the path passes through anything but directories.
func (w *treeWriter) lookup(name string) *node {
	n := w.tree
	for elem := range strings.SplitSeq(name, "/") {
		if n.kind != nodeDir {
			return nil
		}
		if n = n.children[elem]; n == nil {
			return nil
		}
	}
	return n
}

func (w *treeWriter) dir(rawName string) error {
	name, err := w.cleanName(rawName)
	if err != nil || name == "" {
		return err
	}
	if c := w.lookup(name); c != nil && c.implied {
		// Named now: from here on it is counted as this entry.
		c.implied = false
		w.implied--
	}
	if err := w.admit(name); err != nil {
		return err
	}
	parent, base, err := w.parentOf(rawName, name)
	if err != nil {
		return err
	}
	if c := parent.children[base]; c != nil {
		if c.kind != nodeDir {
			return reject(rawName, errDuplicateEntry, "directory replaces a file or link")
		}
		return nil
	}
	if err := w.mkdir(rawName, parent, base); err != nil {
		return err
	}
	w.add(parent, base, nodeDir)
	return nil
}

func (w *treeWriter) file(rawName string, mode os.FileMode, r io.Reader) error {
	name, err := w.cleanName(rawName)
	if err != nil {
		return err
	}
	if name == "" {
		return reject(rawName, errDuplicateEntry, "a file cannot replace the package root")
	}
	if err := w.admit(name); err != nil {
		return err
	}
	parent, base, err := w.parentOf(rawName, name)
	if err != nil {
		return err
	}
	if parent.children[base] != nil {
		return reject(rawName, errDuplicateEntry, "already exists")
	}
	h, err := w.handle(parent)
	if err != nil {
		return err
	}
	// O_EXCL also refuses a symlink in the way, dangling or not.
	f, err := h.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm(mode))
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return reject(rawName, errDuplicateEntry, "already exists")
		}
		return reject(rawName, errDuplicateEntry, "%v", err)
	}
	w.add(parent, base, nodeFile)
	// Set the mode exactly, whatever the agent's umask.
	err = f.Chmod(filePerm(mode))
	if err == nil {
		err = w.copy(rawName, f, r)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("code: extract %q: %w", short(rawName), cerr)
	}
	return err
}

// symlink creates name → target after checking what the target resolves
// to through the tree written so far (archive_link.go).
func (w *treeWriter) symlink(rawName, target string) error {
	name, err := w.cleanName(rawName)
	if err != nil {
		return err
	}
	if name == "" {
		return reject(rawName, errUnsafeLink, "the package root cannot be a link")
	}
	if err := w.admit(name); err != nil {
		return err
	}
	if target == "" || len(target) > maxNameLen || strings.ContainsAny(target, "\\\x00") {
		return reject(rawName, errUnsafeLink, "bad link target %q", short(target))
	}
	if strings.HasPrefix(target, "/") {
		return reject(rawName, errUnsafeLink, "absolute target %q", short(target))
	}
	parent, base, err := w.parentOf(rawName, name)
	if err != nil {
		return err
	}
	if parent.children[base] != nil {
		return reject(rawName, errDuplicateEntry, "already exists")
	}
	// The link is in the model while its own target is resolved, so that
	// a link that reaches itself is seen to loop.
	l := w.add(parent, base, nodeLink)
	l.target = target
	if err := w.resolveLink(l); err != nil {
		w.remove(l)
		return reject(rawName, errUnsafeLink, "target %q %v", short(target), err)
	}
	h, err := w.handle(parent)
	if err == nil {
		err = h.Symlink(target, base)
	}
	if err != nil {
		w.remove(l)
		return reject(rawName, errDuplicateEntry, "%v", err)
	}
	w.links = append(w.links, l)
	return nil
}

// finish resolves every link again in the complete tree: a path that did
// not exist when a link was checked may have been created since, as a
// link that climbs ("x -> m/.." before "m -> d/l" with "d/l -> .."). A link
// that now escapes is removed before the package is refused, so that the
// tree left for the caller to remove holds no way out.
func (w *treeWriter) finish() error {
	for _, l := range w.links {
		if err := w.resolveLink(l); err != nil {
			if h, herr := w.handle(l.parent); herr == nil {
				_ = h.Remove(l.name)
			}
			return reject(l.path(), errUnsafeLink, "target %q %v once the package is complete", short(l.target), err)
		}
	}
	return nil
}

// hardlink creates name as another name of the earlier regular file target.
func (w *treeWriter) hardlink(rawName, rawTarget string) error {
	name, err := w.cleanName(rawName)
	if err != nil {
		return err
	}
	if err := w.admit(name); err != nil {
		return err
	}
	target, terr := w.cleanName(rawTarget)
	var t *node
	if terr == nil && target != "" {
		t = w.lookup(target)
	}
	if t == nil || t.kind != nodeFile {
		return reject(rawName, errUnsafeLink, "hard link target %q is not an earlier file of the package", short(rawTarget))
	}
	if name == "" {
		return reject(rawName, errUnsafeLink, "the package root cannot be a link")
	}
	parent, base, err := w.parentOf(rawName, name)
	if err != nil {
		return err
	}
	if parent.children[base] != nil {
		return reject(rawName, errDuplicateEntry, "already exists")
	}
	// linkat needs both names relative to one handle: that of the
	// nearest common ancestor, so the walk is as short as it can be.
	anc, oldRel, newRel := commonAncestor(t.parent, parent)
	h, err := w.handle(anc)
	if err != nil {
		return err
	}
	if err := h.Link(joinRel(oldRel, t.name), joinRel(newRel, base)); err != nil {
		return reject(rawName, errDuplicateEntry, "%v", err)
	}
	w.add(parent, base, nodeFile)
	return nil
}

// commonAncestor returns the nearest common ancestor of the directories a
// and b and the paths of a and b below it ("" for the ancestor itself).
func commonAncestor(a, b *node) (*node, string, string) {
	depth := func(n *node) int {
		d := 0
		for ; n.parent != nil; n = n.parent {
			d++
		}
		return d
	}
	var aElems, bElems []string
	da, db := depth(a), depth(b)
	for ; da > db; da-- {
		aElems, a = append(aElems, a.name), a.parent
	}
	for ; db > da; db-- {
		bElems, b = append(bElems, b.name), b.parent
	}
	for a != b {
		aElems, a = append(aElems, a.name), a.parent
		bElems, b = append(bElems, b.name), b.parent
	}
	return a, reversedPath(aElems), reversedPath(bElems)
}

func reversedPath(elems []string) string {
	var b strings.Builder
	for i := len(elems) - 1; i >= 0; i-- {
		b.WriteString(elems[i])
		if i > 0 {
			b.WriteByte('/')
		}
	}
	return b.String()
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
