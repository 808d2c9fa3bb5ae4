package faas

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		name, target, header string
		wantID, wantPath     string
		wantErr              string
	}{
		{name: "header form keeps path", target: "/orders?x=1", header: "resize", wantID: "resize", wantPath: "/orders"},
		{name: "path form", target: "/invoke/hello", wantID: "hello", wantPath: "/"},
		{name: "path form with rest", target: "/invoke/hello/a/b?q=1", wantID: "hello", wantPath: "/a/b"},
		{name: "escaped slash in ID", target: "/invoke/tenant%2Ffn/x", wantID: "tenant/fn", wantPath: "/x"},
		{name: "both agree", target: "/invoke/hello", header: "hello", wantID: "hello", wantPath: "/"},
		{name: "both disagree", target: "/invoke/hello", header: "other", wantErr: "does not match"},
		{name: "neither", target: "/", wantErr: "no function"},
		{name: "empty path ID", target: "/invoke/", wantErr: "no function"},
		{name: "bad ID", target: "/invoke/a%20b", wantErr: "function ID"},
		{name: "dot ID", target: "/invoke/..", wantErr: "function ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://gw"+tt.target, nil)
			if tt.header != "" {
				r.Header.Set(lifecycle.HeaderFunctionID, tt.header)
			}
			rt, err := parseRoute(r)
			if tt.wantErr != "" {
				require.NotNil(t, err)
				assert.Equal(t, lifecycle.CodeBadRequest, err.Code)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.Nil(t, err)
			assert.Equal(t, tt.wantID, rt.functionID)
			assert.Equal(t, tt.wantPath, rt.path)
		})
	}
}

func TestParseRouteRejectsRepeatedHeader(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://gw/", nil)
	r.Header.Add(lifecycle.HeaderFunctionID, "a")
	r.Header.Add(lifecycle.HeaderFunctionID, "b")
	_, err := parseRoute(r)
	require.NotNil(t, err)
	assert.Contains(t, err.Error(), "more than one")
}

func TestRequestIDs(t *testing.T) {
	g := newRequestIDs()
	a, b := g.next(), g.next()
	assert.NotEqual(t, a, b)
	assert.True(t, validRequestID(a))
	assert.True(t, strings.HasPrefix(b, g.prefix))
	assert.NotEqual(t, g.prefix, newRequestIDs().prefix, "each dataplane has its own prefix")
	assert.False(t, validRequestID(""))
	assert.False(t, validRequestID("has space"))
	assert.False(t, validRequestID(strings.Repeat("x", 129)))
	assert.False(t, validRequestID("bad\x00"))
}

func FuzzParseRoute(f *testing.F) {
	f.Add("/invoke/hello/x", "")
	f.Add("/y", "fn")
	f.Add("/invoke/%2F%2e%2e", "x")
	f.Fuzz(func(t *testing.T, path, header string) {
		r := httptest.NewRequest(http.MethodGet, "http://gw/", nil)
		r.URL.RawPath, r.URL.Path = "", path
		if header != "" {
			r.Header.Set(lifecycle.HeaderFunctionID, header)
		}
		rt, err := parseRoute(r)
		if err != nil {
			if err.Code != lifecycle.CodeBadRequest {
				t.Fatalf("unexpected code %v", err.Code)
			}
			return
		}
		if lifecycle.ValidFunctionID(rt.functionID) != nil {
			t.Fatalf("accepted invalid ID %q", rt.functionID)
		}
		if !strings.HasPrefix(rt.path, "/") {
			t.Fatalf("path %q does not start with /", rt.path)
		}
	})
}
