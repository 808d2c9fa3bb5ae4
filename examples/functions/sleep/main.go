// Command sleep is a function for load tests: it answers after ?ms=
// milliseconds (0 to 600000, default 0), or earlier with 499 when the caller
// goes away, so that it holds a concurrency slot for a chosen time.
package main

import (
	"fmt"
	"log"
	"net/http"
	"strconv"
	"time"

	"github.com/faasplane/faas/function"
)

const maxMillis = 600_000

func main() {
	if err := function.Serve(handler()); err != nil {
		log.Fatal(err)
	}
}

func handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms := 0
		if s := r.URL.Query().Get("ms"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > maxMillis {
				http.Error(w, fmt.Sprintf("ms must be an integer in [0, %d]", maxMillis), http.StatusBadRequest)
				return
			}
			ms = n
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			fmt.Fprintf(w, "slept %d ms\n", ms)
		case <-r.Context().Done():
			w.WriteHeader(499) // client closed the request
		}
	})
}
