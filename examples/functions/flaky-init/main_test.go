package main

import (
	"fmt"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/faasplane/faas/function"
	"github.com/stretchr/testify/require"
)

func TestFlakyInit(t *testing.T) {
	h, initFn := newFunction(2)
	fh := function.Handler(h, function.WithInit(initFn))
	post := func() int {
		rec := httptest.NewRecorder()
		fh.ServeHTTP(rec, httptest.NewRequest("POST", function.InitPath, nil))
		return rec.Code
	}
	require.Equal(t, 500, post())
	require.Equal(t, 500, post())
	require.Equal(t, 200, post())
	rec := httptest.NewRecorder()
	fh.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, fmt.Sprintf("ready after 3 init attempts (pid %d)\n", os.Getpid()), rec.Body.String())
}

func TestFailTimes(t *testing.T) {
	n, err := failTimes("")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = failTimes("0")
	require.NoError(t, err)
	require.Equal(t, 0, n)
	_, err = failTimes("-1")
	require.Error(t, err)
}
