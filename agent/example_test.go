package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/faasplane/faas/agent"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
)

// An agent serves a generic warm pod until a load turns it into an
// instance; here it only answers a ping (no function loaded yet). The
// control protocol answers only to the pod's token; the invocation
// listener passes every path, /v1/ping included, to the function.
func ExampleAgent() {
	work, _ := os.MkdirTemp("", "agent-work")
	defer os.RemoveAll(work)
	origin, _ := code.NewOrigin(code.OriginConfig{Dir: os.TempDir()})
	defer origin.Close()

	token := lifecycle.NewControlToken() // the pod provider's job
	a, err := agent.New(agent.Config{Store: origin, WorkDir: work, Runtime: "go", Node: "node-1", ControlToken: token})
	if err != nil {
		panic(err)
	}
	lns, err := agent.Listen(agent.Addrs{Invoke: "127.0.0.1:0", Control: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, lns) }()

	var client lifecycle.Client
	ctl := lifecycle.Control{Addr: lns.Control.Addr().String(), Token: token}
	_, err = client.Ping(context.Background(), ctl)
	fmt.Println(errors.Is(err, lifecycle.CodeNoFunction), err)

	_, err = client.Ping(context.Background(), lifecycle.Control{Addr: ctl.Addr, Token: lifecycle.NewControlToken()})
	fmt.Println(errors.Is(err, lifecycle.CodeUnauthorized))

	resp, err := http.Get("http://" + lns.Invoke.Addr().String() + lifecycle.PathPing)
	if err == nil {
		fmt.Println(resp.StatusCode, resp.Header.Get(lifecycle.HeaderErrorCode))
		resp.Body.Close()
	}

	stop() // the Serve context ends: the agent closes
	fmt.Println(<-done)
	// Output:
	// true faas: no_function: no function is loaded on this pod
	// true
	// 400 bad_request
	// <nil>
}

// A LogSink decides where function output goes; the agent has already
// parsed each line (a JSON line from an SDK carries its level, message and
// request ID) and bounded its size and rate.
func ExampleLogSinkFunc() {
	var sink agent.LogSink = agent.LogSinkFunc(func(ctx context.Context, rec agent.LogRecord) {
		fmt.Println(rec.FunctionID, rec.Instance, rec.Level, rec.RequestID, rec.Message)
	})
	// The agent calls it for every line; here, one line by hand.
	sink.Log(context.Background(), agent.LogRecord{FunctionID: "resize", Instance: "pod-1", Level: slog.LevelWarn,
		RequestID: "req-7", Message: "cache miss"})
	// Output: resize pod-1 WARN req-7 cache miss
}
