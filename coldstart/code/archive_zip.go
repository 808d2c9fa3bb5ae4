package code

import (
	"archive/zip"
	"io"
	"io/fs"
	"os"
)

// maxLinkTarget bounds a zip symlink's target, which zip stores as the
// entry's content.
const maxLinkTarget = 4096

// extractZip decodes the zip archive src into w. The central directory is
// sized up before archive/zip parses it (archive_eocd.go), then checked as
// a whole (entry count, declared sizes and ratio), so an obvious bomb is
// refused before a byte is written; the limits are then enforced again on
// the bytes actually decompressed, since declared sizes can lie.
func extractZip(w *treeWriter, src io.ReaderAt, size int64) error {
	if err := checkZipDirectory(src, size, w.lim.MaxFiles); err != nil {
		return err
	}
	zr, err := zip.NewReader(src, size)
	if err != nil && err != zip.ErrInsecurePath {
		// ErrInsecurePath comes with a usable reader; our own checks
		// below reject those names with a precise error.
		return reject("", errCorruptArchive, "zip: %v", err)
	}
	if len(zr.File) > w.lim.MaxFiles {
		return reject("", errTooManyFiles, "%d entries, limit %d", len(zr.File), w.lim.MaxFiles)
	}
	var declared uint64
	for _, f := range zr.File {
		declared += f.UncompressedSize64
		if declared > uint64(w.lim.MaxBytes) {
			return reject(f.Name, errUnpackedTooLarge, "declared sizes exceed %d bytes", w.lim.MaxBytes)
		}
	}
	if err := w.checkRatio("", int64(declared)); err != nil {
		return err
	}
	for _, f := range zr.File {
		if err := extractZipEntry(w, f); err != nil {
			return err
		}
	}
	return nil
}

func extractZipEntry(w *treeWriter, f *zip.File) error {
	mode := f.Mode()
	switch {
	case mode.IsDir():
		return w.dir(f.Name)
	case mode&fs.ModeSymlink != 0:
		if f.UncompressedSize64 > maxLinkTarget {
			return reject(f.Name, errUnsafeLink, "link target longer than %d bytes", maxLinkTarget)
		}
		rc, err := f.Open()
		if err != nil {
			return w.readErr(f.Name, err)
		}
		target, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
		_ = rc.Close()
		if err != nil {
			return w.readErr(f.Name, err)
		}
		return w.symlink(f.Name, string(target))
	case mode.IsRegular():
		rc, err := f.Open()
		if err != nil {
			return w.readErr(f.Name, err)
		}
		defer rc.Close()
		return w.file(f.Name, mode, rc)
	default:
		return reject(f.Name, errSpecialFile, "mode %v", mode&os.ModeType)
	}
}
