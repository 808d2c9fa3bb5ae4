package code_test

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

	"github.com/faasplane/faas/coldstart/code"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func readAllVerified(t *testing.T, st code.Store, ref code.Ref) ([]byte, error) {
	t.Helper()
	rc, err := st.Open(context.Background(), ref)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(code.VerifyReader(rc, ref))
}

func TestDirStore(t *testing.T) {
	dir := t.TempDir()
	data := []byte("package bytes")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f.tar.gz"), data, 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, data, 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "escape")))

	st, err := code.NewDirStore(dir)
	require.NoError(t, err)
	defer st.Close()

	ref := code.RefFor(st.URI("f.tar.gz"), data)
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
		ref  code.Ref
		want error
	}{
		{"missing", code.RefFor(st.URI("nope"), data), code.ErrNotFound},
		{"directory", code.RefFor(st.URI("sub"), data), code.ErrNotFound},
		{"outside by path", code.RefFor("file://"+outside, data), code.ErrNotFound},
		{"outside by dot-dot", code.RefFor(st.URI("sub")+"/../../x", data), code.ErrNotFound},
		{"outside by symlink", code.RefFor(st.URI("escape"), data), code.ErrNotFound},
		{"size", code.Ref{URI: ref.URI, Digest: ref.Digest, Size: ref.Size + 1}, code.ErrSizeMismatch},
		{"remote host", code.RefFor("file://example.com/x", data), code.ErrInvalidRef},
		{"relative", code.RefFor("file:x", data), code.ErrInvalidRef},
		{"http", code.RefFor("http://x/y", data), code.ErrInvalidRef},
		{"bad ref", code.Ref{URI: ref.URI}, code.ErrInvalidRef},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := st.Open(context.Background(), c.ref)
			require.ErrorIs(t, err, c.want)
		})
	}

	// A wrong digest is caught by VerifyReader, not by Open.
	bad := ref
	bad.Digest = code.DigestOf([]byte("other"))
	_, err = readAllVerified(t, st, bad)
	require.ErrorIs(t, err, code.ErrDigestMismatch)

	_, err = code.NewDirStore(filepath.Join(dir, "missing"))
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

	st, err := code.NewHTTPStore(code.HTTPConfig{
		Timeout: 100 * time.Millisecond, MaxSize: 1 << 20,
		Header: http.Header{"Authorization": {"Bearer t"}},
	})
	require.NoError(t, err)
	ref := func(path string) code.Ref { return code.RefFor(srv.URL+path, data) }

	got, err := readAllVerified(t, st, ref("/ok"))
	require.NoError(t, err)
	require.Equal(t, data, got)

	for _, c := range []struct {
		path string
		want error
	}{
		{"/missing", code.ErrNotFound},
		{"/gone", code.ErrNotFound},
		{"/error", code.ErrFetch},
		{"/longer", code.ErrSizeMismatch},
		{"/shorter", code.ErrSizeMismatch},
		{"/length", code.ErrSizeMismatch},
		{"/slow", code.ErrFetch},
	} {
		t.Run(c.path, func(t *testing.T) {
			_, err := readAllVerified(t, st, ref(c.path))
			require.ErrorIs(t, err, c.want)
		})
	}
	_, err = readAllVerified(t, st, ref("/slow"))
	require.ErrorIs(t, err, context.DeadlineExceeded, "a timeout says so")

	// The size cap applies before any request, and to Content-Length.
	big := code.Ref{URI: srv.URL + "/ok", Digest: ref("/ok").Digest, Size: 2 << 20}
	_, err = st.Open(context.Background(), big)
	require.ErrorIs(t, err, code.ErrTooLarge)
	hugeRef := ref("/huge")
	hugeRef.Size = 1000
	_, err = st.Open(context.Background(), hugeRef)
	require.ErrorIs(t, err, code.ErrTooLarge)

	_, err = st.Open(context.Background(), code.RefFor("ftp://x/y", data))
	require.ErrorIs(t, err, code.ErrInvalidRef)
	_, err = code.NewHTTPStore(code.HTTPConfig{Timeout: -1})
	require.Error(t, err)

	// Connection refused is a fetch error.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	_, err = st.Open(context.Background(), code.RefFor(deadURL+"/x", data))
	require.ErrorIs(t, err, code.ErrFetch)
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

	origin, err := code.NewOrigin(code.OriginConfig{Dir: dir})
	require.NoError(t, err)
	defer origin.Close()

	got, err := readAllVerified(t, origin, code.RefFor("file://"+filepath.Join(dir, "f"), fileData))
	require.NoError(t, err)
	require.Equal(t, fileData, got)
	got, err = readAllVerified(t, origin, code.RefFor(srv.URL+"/p", httpData))
	require.NoError(t, err)
	require.Equal(t, httpData, got)
	_, err = origin.Open(context.Background(), code.RefFor("s3://bucket/key", httpData))
	require.ErrorIs(t, err, code.ErrUnsupportedScheme)

	noFiles, err := code.NewOrigin(code.OriginConfig{})
	require.NoError(t, err)
	_, err = noFiles.Open(context.Background(), code.RefFor("file://"+filepath.Join(dir, "f"), fileData))
	require.ErrorIs(t, err, code.ErrUnsupportedScheme)
	noHTTP, err := code.NewOrigin(code.OriginConfig{NoHTTP: true})
	require.NoError(t, err)
	_, err = noHTTP.Open(context.Background(), code.RefFor(srv.URL+"/p", httpData))
	require.ErrorIs(t, err, code.ErrUnsupportedScheme)

	_, err = code.NewSchemeStore(map[string]code.Store{"HTTP": origin})
	require.Error(t, err)
	// A func store (not comparable) does not break Close.
	fs, err := code.NewSchemeStore(map[string]code.Store{"x": code.StoreFunc(func(context.Context, code.Ref) (io.ReadCloser, error) { return nil, nil })})
	require.NoError(t, err)
	require.NoError(t, fs.Close())
	srv.CloseClientConnections()
}
