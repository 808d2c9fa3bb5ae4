package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/faasplane/faas/agent"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
)

// An agent serves a generic warm pod until a load turns it into an
// instance; here it only answers a ping (no function loaded yet).
func ExampleAgent() {
	work, _ := os.MkdirTemp("", "agent-work")
	defer os.RemoveAll(work)
	origin, _ := code.NewOrigin(code.OriginConfig{Dir: os.TempDir()})
	defer origin.Close()

	a, err := agent.New(agent.Config{Store: origin, WorkDir: work, Runtime: "go", Node: "node-1"})
	if err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()

	var client lifecycle.Client
	_, err = client.Ping(context.Background(), ln.Addr().String())
	fmt.Println(errors.Is(err, lifecycle.ErrNoFunction), err)

	stop() // the Serve context ends: the agent closes
	fmt.Println(<-done)
	// Output:
	// true faas: no_function: no function is loaded on this pod
	// <nil>
}
