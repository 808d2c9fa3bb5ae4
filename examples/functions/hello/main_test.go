package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/faasplane/faas/function"
	"github.com/stretchr/testify/require"
)

func TestHello(t *testing.T) {
	h := function.Handler(handler())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/?name=faas", nil))
	require.Equal(t, "hello, faas\n", rec.Body.String())

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, "hello, world\n", rec.Body.String())

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader("echo me")))
	require.Equal(t, "echo me", rec.Body.String())
}
