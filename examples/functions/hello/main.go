// Command hello is the simplest function: it echoes the request body, or
// greets ?name= (default "world") when there is none. It is the function of
// the agent's end-to-end tests and of the proxy benchmark.
//
// Package it with a manifest naming the binary:
//
//	go build -o hello ./examples/functions/hello
//	echo '{"command": "./hello"}' > faas.json
//	tar czf hello.tar.gz hello faas.json
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/faasplane/faas/function"
)

func main() {
	if err := function.Serve(handler()); err != nil {
		log.Fatal(err)
	}
}

func handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.ContentLength != 0 && r.Body != nil {
			// Stream the body back as it arrives.
			if _, err := io.Copy(w, r.Body); err != nil {
				log.Printf("echo: %v", err)
			}
			return
		}
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		fmt.Fprintf(w, "hello, %s\n", name)
	})
}
