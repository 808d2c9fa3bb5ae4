// Command flaky-init is a function whose init hook fails the first
// FAIL_INIT_TIMES times (default 2) and then succeeds, for tests of
// initialize retries: the agent keeps the process, so the attempts are
// counted in one process and a retry is cheap.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/faasplane/faas/function"
)

func main() {
	failures, err := failTimes(os.Getenv("FAIL_INIT_TIMES"))
	if err != nil {
		log.Fatal(err)
	}
	h, initFn := newFunction(failures)
	if err := function.Serve(h, function.WithInit(initFn)); err != nil {
		log.Fatal(err)
	}
}

func failTimes(s string) (int, error) {
	if s == "" {
		return 2, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("FAIL_INIT_TIMES must be a non-negative integer, got %q", s)
	}
	return n, nil
}

func newFunction(failures int) (http.Handler, function.InitFunc) {
	var attempts atomic.Int64
	initFn := func(context.Context) error {
		n := attempts.Add(1)
		if n <= int64(failures) {
			return fmt.Errorf("init attempt %d of %d fails on purpose", n, failures+1)
		}
		return nil
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ready after %d init attempts (pid %d)\n", attempts.Load(), os.Getpid())
	})
	return h, initFn
}
