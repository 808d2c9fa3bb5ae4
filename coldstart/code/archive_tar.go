package code

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"io"
)

// extractTarGz decodes a gzip-compressed tar stream into w.
func extractTarGz(w *treeWriter, r io.Reader) error {
	zr, err := gzip.NewReader(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return reject("", errCorruptArchive, "gzip: %v", err)
	}
	// Concatenated gzip members after the tar's end would only be read
	// past its end-of-archive marker, which this reader never does.
	stream := &countingReader{r: zr, w: w}
	tr := tar.NewReader(stream)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return w.readErr("", err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg: // the reader reports the old TypeRegA as TypeReg or TypeDir
			if err := w.file(hdr.Name, hdr.FileInfo().Mode(), tr); err != nil {
				return err
			}
		case tar.TypeDir:
			if err := w.dir(hdr.Name); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := w.symlink(hdr.Name, hdr.Linkname); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := w.hardlink(hdr.Name, hdr.Linkname); err != nil {
				return err
			}
		case tar.TypeXGlobalHeader:
			// PAX global headers carry metadata only.
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return reject(hdr.Name, errSpecialFile, "device or FIFO (tar type %q)", hdr.Typeflag)
		default:
			return reject(hdr.Name, errSpecialFile, "unsupported tar entry type %q", hdr.Typeflag)
		}
	}
}

// countingReader counts the decompressed tar stream, headers and padding
// included, and applies the ratio limit to it: a bomb need not be in file
// data (huge PAX headers or skipped entry bodies also cost decompression).
type countingReader struct {
	r io.Reader
	w *treeWriter
}

var errStreamTooLarge = errors.New("decompressed stream exceeds the limits")

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.w.streamBytes += int64(n)
	if rerr := c.w.checkRatio("", c.w.streamBytes); rerr != nil {
		return n, rerr
	}
	// Headers cost at most a few KiB per entry beyond the file bytes; the
	// slack below only guards against streams that are nothing but
	// headers or skipped bodies.
	if c.w.streamBytes > c.w.lim.MaxBytes+int64(c.w.lim.MaxFiles)*(8<<10)+RatioFloor {
		return n, reject("", errUnpackedTooLarge, "%v", errStreamTooLarge)
	}
	return n, err
}
