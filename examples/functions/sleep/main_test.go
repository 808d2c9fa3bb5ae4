package main

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/faasplane/faas/function"
	"github.com/stretchr/testify/require"
)

func TestSleep(t *testing.T) {
	h := function.Handler(handler())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/?ms=0", nil))
	require.Equal(t, 200, rec.Code)
	require.Equal(t, "slept 0 ms\n", rec.Body.String())

	for _, bad := range []string{"-1", "x", "600001"} {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/?ms="+bad, nil))
		require.Equal(t, 400, rec.Code, bad)
	}

	// A caller that goes away ends the sleep at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/?ms=600000", nil).WithContext(ctx))
	require.Equal(t, 499, rec.Code)
}
