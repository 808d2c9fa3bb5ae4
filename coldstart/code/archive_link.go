package code

import (
	"errors"
	"strings"
)

// maxLinkHops is how many symlinks one resolution may follow: Linux's
// MAXSYMLINKS, beyond which the kernel fails with ELOOP anyway.
const maxLinkHops = 40

// A link's resolution fails with one of these; the symlink is then refused
// with ErrUnsafeLink.
var (
	errLinkEscapes   = errors.New("resolves outside the package")
	errLinkLoops     = errors.New("goes through more than 40 links (a loop?)")
	errLinkTooLong   = errors.New("takes too many steps to resolve")
	errLinkAmbiguous = errors.New("names a path that differs only in case from one of the package (ambiguous on a case-insensitive file system)")
)

// resolveLink resolves the target of the link l through the tree, element
// by element, as the kernel would: a directory is entered, ".." climbs
// (above the root: errLinkEscapes), a link of the package is replaced by
// its own target, read from the link's directory. It is what the target
// resolves to that must stay inside, not how it is spelt: with d/l -> ..,
// x -> d/l/.. is spelt inside and resolves to the root's parent.
//
// Resolution ends without error where the kernel's would: at a file or at
// a path that does not exist. A path that does not exist yet may be
// created by a later entry, so every link is resolved again once the tree
// is complete ([treeWriter.finish]); the check when the link is created
// only refuses early what is already wrong.
//
// The work is bounded (maxLinkHops links and a budget of elements), so
// that a package of many long chains cannot make extraction quadratic.
func (w *treeWriter) resolveLink(l *node) error {
	budget := 1024 + 4*w.lim.MaxDepth
	stack := []string{l.target} // unread rests of the targets being resolved
	cur := l.parent
	hops := 0
	for len(stack) > 0 {
		top := len(stack) - 1
		elem, rest, _ := strings.Cut(stack[top], "/")
		if rest == "" {
			stack = stack[:top]
		} else {
			stack[top] = rest
		}
		if budget--; budget < 0 {
			return errLinkTooLong
		}
		switch elem {
		case "", ".":
			continue
		case "..":
			if cur.parent == nil {
				return errLinkEscapes
			}
			cur = cur.parent
			continue
		}
		c := cur.children[elem]
		if c == nil {
			if w.folded[foldKey{cur, strings.ToLower(elem)}] != nil {
				return errLinkAmbiguous
			}
			return nil // ENOENT
		}
		switch c.kind {
		case nodeDir:
			cur = c
		case nodeFile:
			return nil // the file itself, or ENOTDIR
		case nodeLink:
			if hops++; hops > maxLinkHops {
				return errLinkLoops
			}
			// c's target is relative to c's directory, which is cur.
			stack = append(stack, c.target)
		}
	}
	return nil
}

// foldKey indexes a directory's children by case-folded name, so that a
// link naming "Lib" where the package has "lib" is seen to be ambiguous.
type foldKey struct {
	dir  *node
	name string
}
