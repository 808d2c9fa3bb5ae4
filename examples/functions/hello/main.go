// Command hello is the simplest function: it echoes the request body, or
// greets ?name= (default "world") when there is none, and reports the HTTP
// version it was called with in X-Hello-Proto. It is the function of the
// agent's end-to-end tests and of the proxy benchmark. With HELLO_H2C=1 it
// also accepts HTTP/2 without TLS (set "protocol": "h2c" in the manifest);
// with HELLO_H2C=only it speaks HTTP/2 without TLS only, as a gRPC server
// does (the agent detects it).
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
	"os"

	"github.com/faasplane/faas/function"
)

func main() {
	var opts []function.Option
	switch os.Getenv("HELLO_H2C") {
	case "1":
		opts = append(opts, function.WithH2C())
	case "only":
		opts = append(opts, function.WithH2COnly())
	}
	if err := function.Serve(handler(), opts...); err != nil {
		log.Fatal(err)
	}
}

func handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Hello-Proto", r.Proto)
		if r.ContentLength != 0 && r.Body != nil {
			// Stream the body back as it arrives: HTTP/1 needs full
			// duplex for that (HTTP/2 always has it).
			_ = http.NewResponseController(w).EnableFullDuplex()
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
