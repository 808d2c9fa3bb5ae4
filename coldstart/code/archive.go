package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Defaults of [Limits].
const (
	DefaultMaxFiles         = 10_000
	DefaultMaxUnpackedBytes = 512 << 20
	DefaultMaxRatio         = 100
	DefaultMaxDepth         = 64
	// RatioFloor is the unpacked size below which the compression ratio
	// is not checked: a small package of text or a tar's zero padding
	// compresses far beyond 100:1 without being a bomb.
	RatioFloor = 1 << 20
)

// Limits bound what [Extract] may write. The zero value means the defaults:
// 10,000 entries, 512 MiB unpacked, a compression ratio of 100:1, 64 path
// elements per name.
type Limits struct {
	// MaxFiles bounds the entries (files, directories, links) plus the
	// parent directories that entries imply without listing them, so
	// that deep names cannot multiply the inodes written. For a zip it
	// also bounds the central directory, which is checked before it is
	// parsed: at most MaxFiles headers of 46 bytes plus 5,120 bytes of
	// name, extra field and comment each. Default 10,000.
	MaxFiles int
	// MaxBytes bounds the unpacked bytes of all files. Default 512 MiB.
	MaxBytes int64
	// MaxRatio bounds unpacked bytes divided by the archive's size, once
	// the unpacked bytes exceed RatioFloor. For a .tar.gz the unpacked
	// bytes are those of the whole decompressed tar stream, headers and
	// padding included, so a bomb hidden in headers is caught too.
	// Default 100.
	MaxRatio float64
	// MaxDepth bounds the path elements of an entry's name ("a/b/c" has
	// three), hence how deep the tree nests. Default 64.
	MaxDepth int
}

func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxUnpackedBytes
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// format is an archive format of code packages.
type format uint8

// The archive formats Extract understands, told apart by their first bytes.
const (
	formatUnknown format = iota
	formatTarGz          // gzip-compressed tar (.tar.gz, .tgz)
	formatZip            // zip
)

// String returns "tar.gz", "zip" or "unknown".
func (f format) String() string {
	switch f {
	case formatTarGz:
		return "tar.gz"
	case formatZip:
		return "zip"
	default:
		return "unknown"
	}
}

// detectFormat tells the format from an archive's first bytes (at least 4).
func detectFormat(head []byte) format {
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return formatTarGz
	case len(head) >= 4 && string(head[:4]) == "PK\x03\x04", len(head) >= 4 && string(head[:4]) == "PK\x05\x06":
		return formatZip
	default:
		return formatUnknown
	}
}

// ErrBadPackage is matched (errors.Is) by every rejection of a package's
// content: each of the Err... values below and every [*ExtractError].
var ErrBadPackage = errors.New("code: bad package")

// packageError is a sentinel that also matches ErrBadPackage.
type packageError struct{ msg string }

func (e *packageError) Error() string        { return e.msg }
func (e *packageError) Is(target error) bool { return target == ErrBadPackage }

// Rejections of Extract and the manifest, one per cause; each matches
// ErrBadPackage too.
var (
	// ErrUnknownFormat: the package is neither a .tar.gz nor a zip.
	errUnknownFormat error = &packageError{"code: unknown archive format (want .tar.gz or .zip)"}
	// ErrCorruptArchive: the archive cannot be read (bad gzip, tar or
	// zip structure, a checksum that does not match).
	errCorruptArchive error = &packageError{"code: corrupt archive"}
	// ErrUnsafePath: an entry's name is absolute, has a ".." element, a
	// backslash or NUL, is too long, or lies beneath a symlink of the
	// package (no entry is ever written through a link).
	errUnsafePath error = &packageError{"code: unsafe path in archive"}
	// ErrUnsafeLink: a symlink whose target is absolute or resolves
	// outside the package, following the package's own links component
	// by component as the kernel would (d/l -> .. then x -> d/l/.. is
	// refused although x is spelt inside); a symlink whose resolution
	// loops or takes too many steps, or that names a missing path
	// differing only in case from one of the package (on a
	// case-insensitive file system it would resolve through it); or a
	// hard link to anything but an earlier regular file of the package.
	errUnsafeLink error = &packageError{"code: unsafe link in archive"}
	// ErrSpecialFile: a device, FIFO, socket or other non-regular entry.
	errSpecialFile error = &packageError{"code: special file in archive"}
	// ErrDuplicateEntry: an entry that would overwrite or conflict with an
	// earlier one, or with something already on disk that the package
	// did not write.
	errDuplicateEntry error = &packageError{"code: duplicate entry in archive"}
	// ErrTooManyFiles: more entries (and implied directories) than
	// Limits.MaxFiles, or a zip whose central directory declares or holds
	// more entries, or more bytes, than that many entries can need.
	errTooManyFiles error = &packageError{"code: too many files in archive"}
	// ErrTooDeep: an entry's name has more path elements than
	// Limits.MaxDepth.
	errTooDeep error = &packageError{"code: archive nests too deep"}
	// ErrUnpackedTooLarge: more unpacked bytes than Limits.MaxBytes.
	errUnpackedTooLarge error = &packageError{"code: archive unpacks too large"}
	// ErrCompressionRatio: unpacked bytes above Limits.MaxRatio times the
	// archive's size.
	errCompressionRatio error = &packageError{"code: compression ratio too high (archive bomb?)"}
	// ErrBadManifest: the package's manifest is missing, malformed or
	// invalid; see [*ManifestError].
	ErrBadManifest error = &packageError{"code: bad manifest"}
)

// extractError reports the entry Extract rejected and why. Err is one of the
// package's sentinels (ErrUnsafePath...), so errors.Is works on it.
type extractError struct {
	// Entry is the entry's name as the archive spells it (sanitized for
	// printing).
	Entry string
	// Err is the sentinel of the rejection.
	Err error
	// Detail says what exactly was wrong.
	Detail string
}

func (e *extractError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if e.Entry != "" {
		fmt.Fprintf(&b, ": entry %q", e.Entry)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *extractError) Unwrap() error { return e.Err }

// Is makes every ExtractError match ErrBadPackage.
func (e *extractError) Is(target error) bool { return target == ErrBadPackage }

func reject(entry string, sentinel error, format string, args ...any) error {
	return &extractError{Entry: short(entry), Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// extractStats describes what extract wrote.
type extractStats struct {
	format format
	// Entries counts files, directories and links.
	Entries int
	// Bytes is the total size of the regular files written.
	Bytes int64
}

// extract unpacks the archive src (size bytes, .tar.gz or zip, told apart by
// its first bytes) into the directory dst, which must exist and should be
// empty. Every write goes through an [os.Root] opened on dst (or on one of
// the directories Extract created below it), and every entry is checked
// before anything is written for it, so nothing is ever written outside
// dst. It rejects, each with its own error (an [*ExtractError] wrapping the
// sentinel): absolute or ".." paths and paths beneath a symlink
// (ErrUnsafePath), symlinks that resolve outside dst and hard links to
// anything but an earlier file (ErrUnsafeLink), devices and FIFOs
// (ErrSpecialFile), duplicates (ErrDuplicateEntry), and archives beyond lim:
// more than MaxFiles entries and implied directories (ErrTooManyFiles),
// names deeper than MaxDepth elements (ErrTooDeep), more than MaxBytes
// unpacked (ErrUnpackedTooLarge), a ratio above MaxRatio
// (ErrCompressionRatio). A zip's central directory is sized up before it is
// parsed. On an error dst may hold part of the archive; the caller removes
// it.
//
// The cost is linear in the archive: Extract keeps the directories it
// created open (a bounded cache of handles), so an entry costs the system
// calls that create it, not a walk from dst.
//
// Extract trusts src no more than any other input: verify the digest first
// (the agent does, with [VerifyReader]). File modes keep their execute bits;
// setuid, setgid, sticky and group/other write bits are dropped.
func extract(ctx context.Context, src io.ReaderAt, size int64, dst string, lim Limits) (extractStats, error) {
	lim = lim.withDefaults()
	var head [4]byte
	if n, _ := src.ReadAt(head[:], 0); n < 2 {
		return extractStats{}, reject("", errUnknownFormat, "archive has %d bytes", size)
	}
	format := detectFormat(head[:])
	if format == formatUnknown {
		return extractStats{}, reject("", errUnknownFormat, "starts with %q", head[:])
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return extractStats{}, fmt.Errorf("code: extract: %w", err)
	}
	w := newTreeWriter(ctx, root, lim, size)
	defer w.close()
	switch format {
	case formatTarGz:
		err = extractTarGz(w, io.NewSectionReader(src, 0, size))
	case formatZip:
		err = extractZip(w, src, size)
	}
	if err == nil {
		err = w.finish()
	}
	return extractStats{format: format, Entries: w.entries, Bytes: w.bytes}, err
}

// treeWriter writes checked entries below root and enforces the limits;
// the format readers only decode. It keeps a model of the tree it wrote
// (archive_tree.go) that every check runs against.
type treeWriter struct {
	ctx         context.Context
	lim         Limits
	archiveSize int64
	entries     int
	implied     int   // parent directories no entry has named (yet)
	bytes       int64 // regular file bytes written
	streamBytes int64 // decompressed bytes seen (tar stream); ratio basis
	buf         []byte
	tree        *node             // the package root; its handle is the os.Root on dst
	folded      map[foldKey]*node // children by case-folded name (archive_link.go)
	lru         dirLRU            // open handles of directories below the root
	links       []*node           // symlinks, resolved again once the tree is complete
}

const maxNameLen = 4096

// cleanName validates an archive entry's name and returns it as a clean,
// slash-separated relative path; "" with a nil error means the archive's
// root ("." or "./"), which is skipped. Whether the path lies beneath a
// symlink is checked against the tree, in [treeWriter.parentOf].
func (w *treeWriter) cleanName(name string) (string, error) {
	if len(name) > maxNameLen {
		return "", reject(name, errUnsafePath, "name longer than %d bytes", maxNameLen)
	}
	if strings.ContainsAny(name, "\\\x00") {
		return "", reject(name, errUnsafePath, "name contains a backslash or NUL")
	}
	if strings.HasPrefix(name, "/") {
		return "", reject(name, errUnsafePath, "absolute path")
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == ".." {
			return "", reject(name, errUnsafePath, "path has a \"..\" element")
		}
		if len(elem) > 255 {
			return "", reject(name, errUnsafePath, "path element longer than 255 bytes")
		}
	}
	clean := filepath.ToSlash(filepath.Clean(name))
	if clean == "." {
		return "", nil
	}
	if !filepath.IsLocal(clean) {
		return "", reject(name, errUnsafePath, "not a local path")
	}
	if depth := strings.Count(clean, "/") + 1; depth > w.lim.MaxDepth {
		return "", reject(name, errTooDeep, "%d path elements, limit %d", depth, w.lim.MaxDepth)
	}
	return clean, nil
}

// admit counts an entry against MaxFiles and checks for cancellation.
func (w *treeWriter) admit(name string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	w.entries++
	return w.checkCount(name)
}

// checkCount applies MaxFiles to the entries and the implied directories.
func (w *treeWriter) checkCount(name string) error {
	if w.entries+w.implied > w.lim.MaxFiles {
		return reject(name, errTooManyFiles, "more than %d entries and implied directories", w.lim.MaxFiles)
	}
	return nil
}

// checkRatio applies the ratio limit to n unpacked bytes.
func (w *treeWriter) checkRatio(name string, n int64) error {
	if n > RatioFloor && float64(n) > w.lim.MaxRatio*float64(max(w.archiveSize, 1)) {
		return reject(name, errCompressionRatio, "more than %.0f:1 (%d bytes from a %d-byte archive)", w.lim.MaxRatio, n, w.archiveSize)
	}
	return nil
}

// filePerm keeps the execute bits and owner access, drops the rest.
func filePerm(mode os.FileMode) os.FileMode {
	return (mode.Perm() &^ 0o022) | 0o600
}

// copy writes r to f, checking the byte and ratio limits as it goes.
func (w *treeWriter) copy(name string, f *os.File, r io.Reader) error {
	if w.buf == nil {
		w.buf = make([]byte, 256<<10)
	}
	for {
		n, rerr := r.Read(w.buf)
		if n > 0 {
			w.bytes += int64(n)
			if w.bytes > w.lim.MaxBytes {
				return reject(name, errUnpackedTooLarge, "more than %d bytes", w.lim.MaxBytes)
			}
			if err := w.checkRatio(name, max(w.bytes, w.streamBytes)); err != nil {
				return err
			}
			if _, err := f.Write(w.buf[:n]); err != nil {
				return fmt.Errorf("code: extract %q: %w", short(name), err)
			}
			if err := w.ctx.Err(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return w.readErr(name, rerr)
		}
	}
}

// readErr classifies an error from a format reader: the limits' own
// rejections and cancellation pass through; anything else is corruption.
func (w *treeWriter) readErr(name string, err error) error {
	var ee *extractError
	if errors.As(err, &ee) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return reject(name, errCorruptArchive, "%v", err)
}
