// Command recorder is the function of the trigger's end-to-end tests: it
// appends one line per invocation, "<request ID> <delivery>\n", to the
// file named by $RECORD_FILE (one write(2) per line with O_APPEND, so that
// concurrent instances never interleave a line, and a line written is
// kept when any process dies afterwards), then answers as the body says:
//
//	fail:<status>        always <status>
//	fail:<status>:<n>    <status> while the delivery is n or less, then 200
//	anything else        200, echoing the request ID
//
// The delivery is the trigger's X-Faas-Trigger-Delivery header. So a test
// counts on the function's side what was processed, how often, and which
// deliveries were repeats.
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/faasplane/faas/function"
)

func main() {
	path := os.Getenv("RECORD_FILE")
	var f *os.File
	if path != "" {
		var err error
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if err := function.Serve(handler(f)); err != nil {
		log.Fatal(err)
	}
}

func handler(f *os.File) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := r.Header.Get("X-Faas-Request-Id")
		delivery, _ := strconv.Atoi(r.Header.Get("X-Faas-Trigger-Delivery"))
		if f != nil {
			if _, err := f.WriteString(rid + " " + strconv.Itoa(delivery) + "\n"); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 512))
		if spec, ok := strings.CutPrefix(string(body), "fail:"); ok {
			parts := strings.Split(spec, ":")
			status, err := strconv.Atoi(parts[0])
			until := 1 << 30
			if len(parts) > 1 {
				until, _ = strconv.Atoi(parts[1])
			}
			if err == nil && delivery <= until {
				w.WriteHeader(status)
				fmt.Fprintf(w, "failing as asked (delivery %d)\n", delivery)
				return
			}
		}
		fmt.Fprintln(w, rid)
	})
}
