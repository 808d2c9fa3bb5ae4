package code

import (
	"fmt"
	"os"
)

// Extract keeps the directories it writes into open, so that an entry is
// created with one *at system call on its parent's handle instead of a
// walk from the root (an os.Root operation on "a/b/.../f" opens every
// element in turn: with deep names, O(depth) per entry and O(depth²) for a
// chain of nested directories).

// maxOpenDirs bounds the directory handles Extract keeps open. Archives
// list their entries mostly depth-first, so the handles of the current
// branch are what matters; 128 covers a branch of the default MaxDepth
// and its recent siblings at a modest cost in descriptors.
const maxOpenDirs = 128

// dirLRU lists the nodes whose handle is open, most recently used first.
type dirLRU struct {
	head, tail *node
	n          int
}

func (l *dirLRU) unlink(n *node) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = nil, nil
	l.n--
}

func (l *dirLRU) pushFront(n *node) {
	n.next = l.head
	if l.head != nil {
		l.head.prev = n
	}
	l.head = n
	if l.tail == nil {
		l.tail = n
	}
	l.n++
}

// close closes every handle, the root's included.
func (w *treeWriter) close() {
	for n := w.lru.head; n != nil; n = n.next {
		_ = n.handle.Close()
		n.handle = nil
	}
	w.lru = dirLRU{}
	_ = w.tree.handle.Close()
}

// handle returns an open handle on the directory d, opening it from its
// nearest ancestor that has one: one openat per directory not cached, and
// none at all on the common path of consecutive entries.
func (w *treeWriter) handle(d *node) (*os.Root, error) {
	var chain []*node // d and its ancestors without a handle, d first
	n := d
	for ; n.handle == nil; n = n.parent {
		chain = append(chain, n)
	}
	// n, the ancestor opened from, is used too: keep it from aging out
	// while its subdirectories come and go.
	w.touch(n)
	for i := len(chain) - 1; i >= 0; i-- {
		n = chain[i]
		// n is a directory this extraction created (the model says so),
		// opened from its parent's handle; a handle cannot reach past
		// the directory it is open on.
		h, err := n.parent.handle.OpenRoot(n.name)
		if err != nil {
			return nil, fmt.Errorf("code: extract: open %q: %w", short(n.path()), err)
		}
		n.handle = h
		w.lru.pushFront(n)
		// Never evict the parent the next iteration opens from: it was
		// pushed just before n, so the tail is older than both.
		if w.lru.n > maxOpenDirs {
			old := w.lru.tail
			w.lru.unlink(old)
			_ = old.handle.Close()
			old.handle = nil
		}
	}
	w.touch(d)
	return d.handle, nil
}

// touch marks the handle of d, which is open, as just used.
func (w *treeWriter) touch(d *node) {
	if d != w.tree && w.lru.head != d {
		w.lru.unlink(d)
		w.lru.pushFront(d)
	}
}
