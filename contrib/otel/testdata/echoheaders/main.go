// Command echoheaders is a test function: it answers with the request's
// headers as a JSON object, so that a test sees what reached the function.
package main

import (
	"encoding/json"
	"log"
	"net/http"

	"github.com/faasplane/faas/function"
)

func main() {
	err := function.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	if err != nil {
		log.Fatal(err)
	}
}
