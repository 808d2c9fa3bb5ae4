package code

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// zipParts writes a real zip of the named empty files and splits it into
// its local part (headers and data), its central directory, and the
// comment of its end record.
func zipParts(t testing.TB, comment string, names ...string) (local, dir []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		_, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Store})
		require.NoError(t, err)
	}
	require.NoError(t, zw.SetComment(comment))
	require.NoError(t, zw.Close())
	b := buf.Bytes()
	end := b[len(b)-zipEndLen-len(comment):]
	size := binary.LittleEndian.Uint32(end[12:])
	off := binary.LittleEndian.Uint32(end[16:])
	return b[:off], b[off : off+size]
}

// fakeHeaders returns n central directory headers of empty stored files
// ("xNNN" plus extra bytes of comment each), all pointing at offset 0:
// enough for archive/zip's NewReader, which reads no local header.
func fakeHeaders(n, comment int) []byte {
	var b bytes.Buffer
	for i := range n {
		name := "x" + strconv.Itoa(i)
		var h [zipHeaderLen]byte
		binary.LittleEndian.PutUint32(h[0:], zipHeaderSig)
		binary.LittleEndian.PutUint16(h[4:], 20)
		binary.LittleEndian.PutUint16(h[6:], 20)
		binary.LittleEndian.PutUint16(h[28:], uint16(len(name)))
		binary.LittleEndian.PutUint16(h[32:], uint16(comment))
		b.Write(h[:])
		b.WriteString(name)
		b.Write(make([]byte, comment))
	}
	return b.Bytes()
}

// endRecord returns a plain end of central directory record.
func endRecord(records uint16, size, offset uint32, comment string) []byte {
	b := make([]byte, zipEndLen, zipEndLen+len(comment))
	binary.LittleEndian.PutUint32(b[0:], zipEndSig)
	binary.LittleEndian.PutUint16(b[8:], records)
	binary.LittleEndian.PutUint16(b[10:], records)
	binary.LittleEndian.PutUint32(b[12:], size)
	binary.LittleEndian.PutUint32(b[16:], offset)
	binary.LittleEndian.PutUint16(b[20:], uint16(len(comment)))
	return append(b, comment...)
}

// zip64End returns a zip64 end record, its locator (the record being at
// p) and a plain end record that defers to them.
func zip64End(records, size, offset uint64, p int64) []byte {
	rec := make([]byte, zip64EndLen)
	binary.LittleEndian.PutUint32(rec[0:], zip64EndSig)
	binary.LittleEndian.PutUint64(rec[4:], zip64EndLen-12)
	binary.LittleEndian.PutUint64(rec[24:], records)
	binary.LittleEndian.PutUint64(rec[32:], records)
	binary.LittleEndian.PutUint64(rec[40:], size)
	binary.LittleEndian.PutUint64(rec[48:], offset)
	loc := make([]byte, zip64LocatorLen)
	binary.LittleEndian.PutUint32(loc[0:], zip64LocSig)
	binary.LittleEndian.PutUint64(loc[8:], uint64(p))
	binary.LittleEndian.PutUint32(loc[16:], 1)
	rec = append(rec, loc...)
	return append(rec, endRecord(0xffff, 0xffffffff, 0xffffffff, "")...)
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// hostileZips are zips whose central directory is beyond MaxFiles = 10,
// in every way it can be: declared or actual, count or bytes.
func hostileZips(t testing.TB) map[string][]byte {
	local, dir := zipParts(t, "", "a")
	lo, ds := uint32(len(local)), uint32(len(dir))
	padded := concat(local, make([]byte, 60<<10), dir)
	big := fakeHeaders(5, 20<<10) // 5 entries of 100 KiB in all
	var many bytes.Buffer
	zw := zip.NewWriter(&many)
	for i := range 5000 {
		_, err := zw.Create("f" + strconv.Itoa(i))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return map[string][]byte{
		// What the end record says: no header needs to be read.
		"zip64 declares a million entries": concat(local, dir,
			zip64End(1_000_000, uint64(ds), uint64(lo), int64(lo+ds))),
		"declares 65535 entries": concat(local, dir, endRecord(0xffff, ds, lo, "")),
		"declares a directory larger than 10 entries need": concat(padded,
			endRecord(1, uint32(len(padded))-lo, lo, "")),
		// What the directory holds, whatever the end record says:
		// archive/zip reads headers for as long as they parse and only
		// compares the count modulo 65536.
		// (The declared size is a lie too, or it would give the game away:
		// NewReader then takes the directory to start where the offset
		// says, not where the size says.)
		"count hidden modulo 65536": concat(local, dir, fakeHeaders(65536, 0),
			endRecord(1, ds, lo, "")),
		"directory larger than declared": concat(local, dir, big,
			endRecord(6, 46, lo, "")),
		"5000 real entries": many.Bytes(),
	}
}

// TestZipDirectoryRefusedBeforeParsing is the regression test of the zip
// entry count checked too late: each zip is refused with ErrTooManyFiles
// at a cost that does not depend on its directory (a few buffers, not an
// object per entry), which archive/zip's NewReader cannot do.
func TestZipDirectoryRefusedBeforeParsing(t *testing.T) {
	lim := Limits{MaxFiles: 10}
	for name, archive := range hostileZips(t) {
		t.Run(name, func(t *testing.T) {
			work := t.TempDir()
			i := 0
			var err error
			extract := func() {
				i++
				dst := filepath.Join(work, strconv.Itoa(i))
				if mkErr := os.Mkdir(dst, 0o755); mkErr != nil {
					t.Fatal(mkErr)
				}
				_, err = extract(context.Background(), bytes.NewReader(archive), int64(len(archive)), dst, lim)
			}
			extract()
			require.ErrorIs(t, err, errTooManyFiles)
			var ee *extractError
			require.ErrorAs(t, err, &ee)
			require.Contains(t, ee.Detail, "central directory")

			allocs := testing.AllocsPerRun(5, extract)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			const runs = 5
			for range runs {
				extract()
			}
			runtime.ReadMemStats(&after)
			perRun := (after.TotalAlloc - before.TotalAlloc) / runs
			t.Logf("%d-byte zip: refused with %.0f allocations, %d bytes", len(archive), allocs, perRun)
			require.Less(t, allocs, 100.0)
			require.Less(t, perRun, uint64(256<<10))
		})
	}
}

// TestReadZipEnd reads the end records of well-formed zips the way
// archive/zip does: with a comment, with bytes appended, with a stub
// prepended (a self-extracting archive, whose offsets are relative to the
// zip's own start), and through a zip64 record.
func TestReadZipEnd(t *testing.T) {
	local, dir := zipParts(t, "a comment", "a", "b/", "b/c")
	lo, ds := uint32(len(local)), uint32(len(dir))
	full := concat(local, dir, endRecord(3, ds, lo, "a comment"))
	stub := []byte("#!/bin/sh\nexit 0\n")
	for name, c := range map[string]struct {
		archive []byte
		starts  []int64
	}{
		"comment":  {full, []int64{int64(lo)}},
		"appended": {concat(full, []byte("junk")), []int64{int64(lo)}},
		"stub":     {concat(stub, full), []int64{int64(len(stub)) + int64(lo), int64(lo)}},
		"zip64":    {concat(local, dir, zip64End(3, uint64(ds), uint64(lo), int64(lo+ds))), []int64{int64(lo)}},
	} {
		t.Run(name, func(t *testing.T) {
			zr, err := zip.NewReader(bytes.NewReader(c.archive), int64(len(c.archive)))
			require.NoError(t, err)
			require.Len(t, zr.File, 3)
			d, err := readZipEnd(bytes.NewReader(c.archive), int64(len(c.archive)))
			require.NoError(t, err)
			require.Equal(t, uint64(3), d.records)
			require.Equal(t, uint64(ds), d.size)
			require.Equal(t, c.starts, d.starts)
			require.NoError(t, checkZipDirectory(bytes.NewReader(c.archive), int64(len(c.archive)), 3))
			require.ErrorIs(t, checkZipDirectory(bytes.NewReader(c.archive), int64(len(c.archive)), 2), errTooManyFiles)
		})
	}
	for name, archive := range map[string][]byte{
		"empty":                {},
		"no end record":        concat(local, dir),
		"truncated comment":    concat(local, dir, endRecord(3, ds, lo, "a comment")[:zipEndLen+3]),
		"size beyond the file": concat(local, dir, endRecord(3, lo+ds+99, lo, "")),
		"record too far": concat(endRecord(0, 0, 0, ""),
			make([]byte, zipEndLen+zipEndMaxComment)), // only archive/zip's larger window sees it
		"bad zip64 record": concat(local, dir, zip64End(3, uint64(ds), uint64(lo), 0)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := readZipEnd(bytes.NewReader(archive), int64(len(archive)))
			require.Error(t, err)
			err = checkZipDirectory(bytes.NewReader(archive), int64(len(archive)), 10)
			require.ErrorIs(t, err, errCorruptArchive)
		})
	}
}

// FuzzZipEnd checks the end-record reader against archive/zip itself.
// Whatever the input: no panic; an error matches ErrBadPackage; when the
// check passes and archive/zip reads the zip, archive/zip read at most
// maxFiles entries within the byte budget (the check is sound); and when
// archive/zip reads a zip small enough for the record to lie in the
// searched window, the check finds a record too (it refuses nothing on
// a misreading of the format).
func FuzzZipEnd(f *testing.F) {
	const maxFiles = 8
	local, dir := zipParts(f, "c", "a", "b/", "b/c")
	lo, ds := uint32(len(local)), uint32(len(dir))
	full := concat(local, dir, endRecord(3, ds, lo, "c"))
	f.Add(full)
	f.Add(concat([]byte("stub"), full))
	f.Add(concat(full, []byte("junk")))
	f.Add(concat(local, dir, zip64End(3, uint64(ds), uint64(lo), int64(lo+ds))))
	f.Add(concat(local, dir, zip64End(1<<40, uint64(ds), uint64(lo), int64(lo+ds))))
	f.Add(concat(local, dir, fakeHeaders(maxFiles, 0), endRecord(3, ds, lo, "")))
	f.Add(concat(local, dir, fakeHeaders(2, 300), endRecord(6, 46, lo, "")))
	f.Add(endRecord(0, 0, 0, ""))
	f.Add([]byte("PK\x05\x06"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		size := int64(len(b))
		if d, err := readZipEnd(r, size); err == nil {
			for _, s := range d.starts {
				if s < 0 || s >= size {
					t.Fatalf("start %d outside the %d-byte input", s, size)
				}
			}
		}
		err := checkZipDirectory(r, size, maxFiles)
		if err != nil && !errors.Is(err, ErrBadPackage) {
			t.Fatalf("error outside the package's set: %v", err)
		}
		zr, zerr := zip.NewReader(r, size)
		if zerr == zip.ErrInsecurePath {
			zerr = nil
		}
		if zerr != nil {
			return
		}
		if err == nil {
			var bytes int64
			for _, f := range zr.File {
				bytes += int64(zipHeaderLen + len(f.Name) + len(f.Extra) + len(f.Comment))
			}
			if len(zr.File) > maxFiles || bytes > zipDirectoryBudget(maxFiles) {
				t.Fatalf("check passed a directory of %d entries, %d bytes", len(zr.File), bytes)
			}
			return
		}
		if !errors.Is(err, errTooManyFiles) && size <= zipEndLen+zipEndMaxComment {
			t.Fatalf("archive/zip reads %d entries, the check says %v", len(zr.File), err)
		}
	})
}

// BenchmarkZipDirectoryCheck measures the check on a well-formed zip of
// 1,000 entries (what every zip extraction now pays first) and the
// refusal of one that hides 65,537 entries behind a count of 1.
func BenchmarkZipDirectoryCheck(b *testing.B) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range 1000 {
		_, _ = zw.Create(fmt.Sprintf("dir/file%04d.txt", i))
	}
	_ = zw.Close()
	hidden := hostileZips(b)["count hidden modulo 65536"]
	for name, c := range map[string]struct {
		archive []byte
		ok      bool
	}{"1000 entries": {buf.Bytes(), true}, "hidden 65537 entries": {hidden, false}} {
		b.Run(strings.ReplaceAll(name, " ", "-"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				err := checkZipDirectory(bytes.NewReader(c.archive), int64(len(c.archive)), DefaultMaxFiles)
				if (err == nil) != c.ok {
					b.Fatal(err)
				}
			}
		})
	}
}
