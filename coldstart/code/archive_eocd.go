package code

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
)

// archive/zip's NewReader parses the whole central directory, one
// allocation per entry, before it returns: a zip of a million empty
// entries costs hundreds of MB before its entry count could be checked.
// So the end-of-central-directory records are read here first, the way
// NewReader reads them, and the directory is sized up against the limits
// without allocating per entry. Only then is NewReader called.

const (
	zipEndLen        = 22 // end of central directory record, without its comment
	zipEndMaxComment = 0xffff
	zip64LocatorLen  = 20
	zip64EndLen      = 56
	zipHeaderLen     = 46 // central directory header, without name, extra, comment

	zipEndSig     = 0x06054b50
	zip64LocSig   = 0x07064b50
	zip64EndSig   = 0x06064b50
	zipHeaderSig  = 0x02014b50
	maxZipHeader  = zipHeaderLen + maxNameLen + maxZipExtra
	maxZipExtra   = 1024 // extra field and comment of one entry, on average
	zipReadBuffer = 32 << 10
)

var errZipEnd = errors.New("no valid end of central directory record")

// zipEnd is what the end records of a zip declare.
type zipEnd struct {
	records uint64 // entries (a plain record holds the count modulo 65536)
	size    uint64 // bytes of the central directory
	offset  uint64 // where the central directory starts, before baseOffset
	// starts are where archive/zip may begin to read the directory:
	// baseOffset+offset, and offset when baseOffset > 0 (NewReader falls
	// back to a zero baseOffset if a header parses there).
	starts []int64
}

// readZipEnd finds and decodes the end of central directory record of the
// zip r of the given size, and the zip64 record it points to, as
// archive/zip does: the last signature within the last 64 KiB + 22 bytes
// whose comment fits in the file (NewReader searches 65 KiB, so any
// record found here is the one it finds too; one only it would find is
// refused).
func readZipEnd(r io.ReaderAt, size int64) (zipEnd, error) {
	var d zipEnd
	// The last 1 KiB first: it holds the record of nearly every zip, and
	// if it holds a signature, that is the last one of the whole window.
	var buf []byte
	var n int64
	p := -1
	for _, window := range []int64{1 << 10, zipEndLen + zipEndMaxComment} {
		if n == size {
			break
		}
		n = min(size, window)
		buf = make([]byte, n)
		if _, err := r.ReadAt(buf, size-n); err != nil && err != io.EOF {
			return d, err
		}
		if p = lastZipEnd(buf); p >= 0 {
			break
		}
	}
	if p < 0 {
		return d, errZipEnd
	}
	b := buf[p:]
	if comment := int(binary.LittleEndian.Uint16(b[20:])); zipEndLen+comment > len(b) {
		return d, errors.New("end of central directory comment runs past the end of the file")
	}
	endOffset := size - n + int64(p)
	d.records = uint64(binary.LittleEndian.Uint16(b[10:]))
	d.size = uint64(binary.LittleEndian.Uint32(b[12:]))
	d.offset = uint64(binary.LittleEndian.Uint32(b[16:]))

	// archive/zip looks for zip64 records when any of these is maxed out
	// (the size test is against 0xffff, as it is there).
	if d.records == 0xffff || d.size == 0xffff || d.offset == 0xffffffff {
		if p, ok, err := readZip64Locator(r, endOffset); err != nil {
			return d, err
		} else if ok && p >= 0 {
			if err := readZip64End(r, p, &d); err != nil {
				return d, err
			}
			endOffset = p
		}
	}
	const maxInt64 = 1<<63 - 1
	if d.size > maxInt64 || d.offset > maxInt64 {
		return d, errors.New("central directory size or offset out of range")
	}
	base := endOffset - int64(d.size) - int64(d.offset)
	if o := base + int64(d.offset); o < 0 || o >= size {
		return d, errors.New("central directory offset outside the file")
	}
	d.starts = append(d.starts, base+int64(d.offset))
	if base > 0 {
		d.starts = append(d.starts, int64(d.offset))
	}
	return d, nil
}

// lastZipEnd returns the offset of the last end record signature in b
// with a whole record after it, or -1.
func lastZipEnd(b []byte) int {
	for i := len(b) - zipEndLen; i >= 0; i-- {
		if binary.LittleEndian.Uint32(b[i:]) == zipEndSig {
			return i
		}
	}
	return -1
}

// readZip64Locator reads the zip64 end of central directory locator just
// before the record at endOffset; ok is false when there is none.
func readZip64Locator(r io.ReaderAt, endOffset int64) (p int64, ok bool, err error) {
	loc := endOffset - zip64LocatorLen
	if loc < 0 {
		return 0, false, nil
	}
	var b [zip64LocatorLen]byte
	if _, err := r.ReadAt(b[:], loc); err != nil {
		return 0, false, err
	}
	if binary.LittleEndian.Uint32(b[0:]) != zip64LocSig ||
		binary.LittleEndian.Uint32(b[4:]) != 0 || // disk of the zip64 record
		binary.LittleEndian.Uint32(b[16:]) != 1 { // number of disks
		return 0, false, nil
	}
	// An offset above MaxInt64 turns negative, and archive/zip then
	// ignores the locator: so does the caller.
	return int64(binary.LittleEndian.Uint64(b[8:])), true, nil
}

// readZip64End reads the zip64 end of central directory record at p into d.
func readZip64End(r io.ReaderAt, p int64, d *zipEnd) error {
	var b [zip64EndLen]byte
	if _, err := r.ReadAt(b[:], p); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(b[0:]) != zip64EndSig {
		return errors.New("bad zip64 end of central directory record")
	}
	d.records = binary.LittleEndian.Uint64(b[32:])
	d.size = binary.LittleEndian.Uint64(b[40:])
	d.offset = binary.LittleEndian.Uint64(b[48:])
	return nil
}

// zipDirectoryBudget is the most central directory bytes maxFiles entries
// may need: a fixed header, a name of up to maxNameLen bytes, and
// maxZipExtra bytes of extra field and comment each.
func zipDirectoryBudget(maxFiles int) int64 {
	return int64(maxFiles) * maxZipHeader
}

// countZipHeaders counts the central directory headers from start on as
// archive/zip reads them: one after another, for as long as the next has
// the header's signature and is whole. The declared count does not bound
// that loop (it only has to match modulo 65536), so the headers are
// counted, up to maxFiles+1 of them or maxBytes, whichever is first; over
// says the directory goes beyond. It reads through br, allocating nothing
// per entry.
func countZipHeaders(br *bufio.Reader, r io.ReaderAt, size, start int64, maxFiles int, maxBytes int64) (n int, bytes int64, over bool) {
	br.Reset(io.NewSectionReader(r, start, size-start))
	var h [zipHeaderLen]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return n, bytes, false
		}
		if binary.LittleEndian.Uint32(h[0:]) != zipHeaderSig {
			return n, bytes, false
		}
		rest := int(binary.LittleEndian.Uint16(h[28:])) + // name
			int(binary.LittleEndian.Uint16(h[30:])) + // extra
			int(binary.LittleEndian.Uint16(h[32:])) // comment
		if m, _ := br.Discard(rest); m < rest {
			return n, bytes, false
		}
		n++
		bytes += int64(zipHeaderLen + rest)
		if n > maxFiles || bytes > maxBytes {
			return n, bytes, true
		}
	}
}

// checkZipDirectory refuses, before archive/zip parses it, a zip whose
// central directory declares or holds more than maxFiles entries or more
// bytes than zipDirectoryBudget(maxFiles).
func checkZipDirectory(r io.ReaderAt, size int64, maxFiles int) error {
	d, err := readZipEnd(r, size)
	if err != nil {
		return reject("", errCorruptArchive, "zip: %v", err)
	}
	budget := zipDirectoryBudget(maxFiles)
	if d.records > uint64(maxFiles) {
		return reject("", errTooManyFiles, "central directory declares %d entries, limit %d", d.records, maxFiles)
	}
	if d.size > uint64(budget) {
		return reject("", errTooManyFiles, "central directory declares %d bytes, limit %d for %d entries", d.size, budget, maxFiles)
	}
	br := bufio.NewReaderSize(nil, zipReadBuffer)
	for _, start := range d.starts {
		if n, _, over := countZipHeaders(br, r, size, start, maxFiles, budget); over {
			if n > maxFiles {
				return reject("", errTooManyFiles, "central directory holds more than %d entries", maxFiles)
			}
			return reject("", errTooManyFiles, "central directory holds more than %d bytes in %d entries", budget, n)
		}
	}
	return nil
}
