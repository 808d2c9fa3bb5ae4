package code

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func readAllVerified(t *testing.T, st Store, ref Ref) ([]byte, error) {
	t.Helper()
	rc, err := st.Open(context.Background(), ref)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(VerifyReader(rc, ref))
}

func TestDirStore(t *testing.T) {
	dir := t.TempDir()
	data := []byte("package bytes")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f.tar.gz"), data, 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, data, 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "escape")))

	st, err := NewDirStore(dir)
	require.NoError(t, err)
	defer st.Close()

	ref := RefFor(st.URI("f.tar.gz"), data)
	require.Equal(t, "file://"+filepath.ToSlash(filepath.Join(dir, "f.tar.gz")), ref.URI)
	got, err := readAllVerified(t, st, ref)
	require.NoError(t, err)
	require.Equal(t, data, got)

	// localhost form
	ref2 := ref
	ref2.URI = "file://localhost" + filepath.ToSlash(filepath.Join(dir, "f.tar.gz"))
	_, err = readAllVerified(t, st, ref2)
	require.NoError(t, err)

	cases := []struct {
		name string
		ref  Ref
		want error
	}{
		{"missing", RefFor(st.URI("nope"), data), ErrNotFound},
		{"directory", RefFor(st.URI("sub"), data), ErrNotFound},
		{"outside by path", RefFor("file://"+outside, data), ErrNotFound},
		{"outside by dot-dot", RefFor(st.URI("sub")+"/../../x", data), ErrNotFound},
		{"outside by symlink", RefFor(st.URI("escape"), data), ErrNotFound},
		{"size", Ref{URI: ref.URI, Digest: ref.Digest, Size: ref.Size + 1}, ErrSizeMismatch},
		{"remote host", RefFor("file://example.com/x", data), ErrInvalidRef},
		{"relative", RefFor("file:x", data), ErrInvalidRef},
		{"http", RefFor("http://x/y", data), ErrInvalidRef},
		{"bad ref", Ref{URI: ref.URI}, ErrInvalidRef},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := st.Open(context.Background(), c.ref)
			require.ErrorIs(t, err, c.want)
		})
	}

	// A wrong digest is caught by VerifyReader, not by Open.
	bad := ref
	bad.Digest = DigestOf([]byte("other"))
	_, err = readAllVerified(t, st, bad)
	require.ErrorIs(t, err, ErrDigestMismatch)

	_, err = NewDirStore(filepath.Join(dir, "missing"))
	require.Error(t, err)
}

func TestHTTPStore(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	data := []byte("a code package")
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			require.Equal(t, "Bearer t", r.Header.Get("Authorization"))
			_, _ = w.Write(data)
		case "/gone":
			w.WriteHeader(http.StatusGone)
		case "/error":
			w.WriteHeader(http.StatusInternalServerError)
		case "/longer": // chunked, no Content-Length
			w.(http.Flusher).Flush()
			_, _ = w.Write(append(data, "extra"...))
		case "/shorter":
			w.(http.Flusher).Flush()
			_, _ = w.Write(data[:5])
		case "/length":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
			_, _ = w.Write(append(data, '!'))
		case "/huge":
			w.Header().Set("Content-Length", "999999999")
		case "/slow":
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(release)

	st, err := NewHTTPStore(HTTPConfig{
		Timeout: 100 * time.Millisecond, MaxSize: 1 << 20,
		Header: http.Header{"Authorization": {"Bearer t"}},
	})
	require.NoError(t, err)
	ref := func(path string) Ref { return RefFor(srv.URL+path, data) }

	got, err := readAllVerified(t, st, ref("/ok"))
	require.NoError(t, err)
	require.Equal(t, data, got)

	for _, c := range []struct {
		path string
		want error
	}{
		{"/missing", ErrNotFound},
		{"/gone", ErrNotFound},
		{"/error", ErrFetch},
		{"/longer", ErrSizeMismatch},
		{"/shorter", ErrSizeMismatch},
		{"/length", ErrSizeMismatch},
		{"/slow", ErrFetch},
	} {
		t.Run(c.path, func(t *testing.T) {
			_, err := readAllVerified(t, st, ref(c.path))
			require.ErrorIs(t, err, c.want)
		})
	}
	_, err = readAllVerified(t, st, ref("/slow"))
	require.ErrorIs(t, err, context.DeadlineExceeded, "a timeout says so")

	// The size cap applies before any request, and to Content-Length.
	big := Ref{URI: srv.URL + "/ok", Digest: ref("/ok").Digest, Size: 2 << 20}
	_, err = st.Open(context.Background(), big)
	require.ErrorIs(t, err, ErrTooLarge)
	hugeRef := ref("/huge")
	hugeRef.Size = 1000
	_, err = st.Open(context.Background(), hugeRef)
	require.ErrorIs(t, err, ErrTooLarge)

	_, err = st.Open(context.Background(), RefFor("ftp://x/y", data))
	require.ErrorIs(t, err, ErrInvalidRef)
	_, err = NewHTTPStore(HTTPConfig{Timeout: -1})
	require.Error(t, err)

	// Connection refused is a fetch error.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	_, err = st.Open(context.Background(), RefFor(deadURL+"/x", data))
	require.ErrorIs(t, err, ErrFetch)
	srv.CloseClientConnections()
}

func TestOrigin(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	fileData := []byte("from disk")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), fileData, 0o644))
	httpData := []byte("from http")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(httpData) }))
	defer srv.Close()

	origin, err := NewOrigin(OriginConfig{Dir: dir})
	require.NoError(t, err)
	defer origin.Close()

	got, err := readAllVerified(t, origin, RefFor("file://"+filepath.Join(dir, "f"), fileData))
	require.NoError(t, err)
	require.Equal(t, fileData, got)
	got, err = readAllVerified(t, origin, RefFor(srv.URL+"/p", httpData))
	require.NoError(t, err)
	require.Equal(t, httpData, got)
	_, err = origin.Open(context.Background(), RefFor("s3://bucket/key", httpData))
	require.ErrorIs(t, err, ErrUnsupportedScheme)

	noFiles, err := NewOrigin(OriginConfig{})
	require.NoError(t, err)
	_, err = noFiles.Open(context.Background(), RefFor("file://"+filepath.Join(dir, "f"), fileData))
	require.ErrorIs(t, err, ErrUnsupportedScheme)
	noHTTP, err := NewOrigin(OriginConfig{NoHTTP: true})
	require.NoError(t, err)
	_, err = noHTTP.Open(context.Background(), RefFor(srv.URL+"/p", httpData))
	require.ErrorIs(t, err, ErrUnsupportedScheme)

	_, err = NewSchemeStore(map[string]Store{"HTTP": origin})
	require.Error(t, err)
	// A func store (not comparable) does not break Close.
	fs, err := NewSchemeStore(map[string]Store{"x": StoreFunc(func(context.Context, Ref) (io.ReadCloser, error) { return nil, nil })})
	require.NoError(t, err)
	require.NoError(t, fs.Close())
	srv.CloseClientConnections()
}
