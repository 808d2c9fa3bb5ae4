package function_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/faasplane/faas/function"
)

// A function is an http.Handler and an optional init func; main calls
// Serve, which reads PORT and answers the agent's init hook.
func ExampleServe() {
	var greeting string // set once by init
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, greeting)
	})
	initFn := func(ctx context.Context) error {
		greeting = "hello" // e.g. load a model, open a connection pool
		return nil
	}
	if err := function.Serve(handler, function.WithInit(initFn)); err != nil {
		log.Fatal(err)
	}
}

// Handler makes a function testable without a process: requests wait for
// the init hook, which the agent calls once per instance.
func ExampleHandler() {
	h := function.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}), function.WithInit(func(context.Context) error { return nil }))

	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func() string {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %q", resp.StatusCode, b)
	}
	fmt.Println(get())
	resp, _ := http.Post(srv.URL+function.InitPath, "", nil)
	resp.Body.Close()
	fmt.Println("init:", resp.StatusCode)
	fmt.Println(get())
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// 503 "function not initialized\n"
	// init: 200
	// 200 "hello"
}

// Logger ties a handler's log records to its invocation: the agent reads
// the JSON lines from the function's stderr and records them with the
// request's ID.
func ExampleLogger() {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		function.Logger(r).Info("resizing", "width", 640)
		io.WriteString(w, "done")
	})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set(function.HeaderRequestID, "req-1")
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String(), function.RequestID(req))
	// Output: done req-1
}
