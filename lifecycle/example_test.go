package lifecycle_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// An instance walks the happy path; an observer sees every transition, and
// an illegal one is refused without changing anything.
func ExampleInstance() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	logger := lifecycle.ObserverFunc(func(in *lifecycle.Instance, t lifecycle.Transition) {
		fmt.Printf("%s: %s → %s (%s)\n", in.ID, t.From, t.To, t.Reason)
	})
	in := lifecycle.NewInstance(lifecycle.Info{ID: "i-1", FunctionID: "resize"}, now, logger)
	_ = in.Transition(now, lifecycle.Loading, "pod taken")
	_ = in.Transition(now, lifecycle.Loaded, "process listens")
	_ = in.Transition(now, lifecycle.Ready, "init ok")

	err := in.Transition(now, lifecycle.Loading, "reload?")
	fmt.Println(errors.Is(err, lifecycle.ErrIllegalTransition), in.State())
	// Output:
	// i-1: Pending → Loading (pod taken)
	// i-1: Loading → Loaded (process listens)
	// i-1: Loaded → Ready (init ok)
	// true Ready
}

// A generic warm pod answers a ping with no_function; the client returns an
// *Error that matches the sentinel.
func ExampleClient_Ping() {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, lifecycle.CodeNoFunction, "generic warm pod")
	}))
	defer agent.Close()

	var c lifecycle.Client // zero value: default timeouts
	ctl := lifecycle.Control{Addr: strings.TrimPrefix(agent.URL, "http://"), Token: lifecycle.NewControlToken()}
	_, err := c.Ping(context.Background(), ctl)
	fmt.Println(errors.Is(err, lifecycle.CodeNoFunction))
	fmt.Println(err)
	// Output:
	// true
	// faas: no_function: generic warm pod
}

// Load and initialize an instance; a failed init is retried in the same
// process.
func ExampleClient_Initialize() {
	attempts := 0
	token := lifecycle.NewControlToken() // what the pod provider gave the agent
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			writeError(w, lifecycle.CodeUnauthorized, "wrong control token")
			return
		}
		switch r.URL.Path {
		case lifecycle.PathLoad:
			var req lifecycle.LoadRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				writeError(w, lifecycle.CodeBadRequest, err.Error())
				return
			}
			_ = json.NewEncoder(w).Encode(lifecycle.LoadResponse{FunctionID: req.FunctionID, PID: 4242})
		case lifecycle.PathInitialize:
			if attempts++; attempts < 2 {
				writeError(w, lifecycle.CodeInitFailed, "database not reachable yet")
				return
			}
			_ = json.NewEncoder(w).Encode(lifecycle.InitializeResponse{FunctionID: "resize", Attempts: attempts})
		}
	}))
	defer agent.Close()
	ctl := lifecycle.Control{Addr: strings.TrimPrefix(agent.URL, "http://"), Token: token}

	c, _ := lifecycle.NewClient(lifecycle.ClientConfig{InitializeTimeout: 5 * time.Second})
	ctx := context.Background()
	lr, err := c.Load(ctx, ctl, lifecycle.LoadRequest{
		FunctionID: "resize",
		Code: lifecycle.CodeRef{
			URI:    "file:///srv/code/resize.tar.gz",
			Digest: "sha256:" + strings.Repeat("ab", 32),
			Size:   1 << 20,
		},
		Runtime: "go",
	})
	fmt.Println(lr.PID, err)
	for {
		ir, err := c.Initialize(ctx, ctl, lifecycle.InitializeRequest{FunctionID: "resize"})
		if errors.Is(err, lifecycle.CodeInitFailed) {
			fmt.Println("retrying:", err)
			continue
		}
		fmt.Println("ready after", ir.Attempts, "attempts")
		break
	}
	// Output:
	// 4242 <nil>
	// retrying: faas: init_failed: database not reachable yet
	// ready after 2 attempts
}

// writeError answers as an agent that refuses a request: the status and
// the error headers that the client turns into an *lifecycle.Error.
func writeError(w http.ResponseWriter, c lifecycle.ErrorCode, msg string) {
	w.Header().Set(lifecycle.HeaderErrorCode, string(c))
	w.Header().Set(lifecycle.HeaderErrorMessage, msg)
	w.WriteHeader(c.Status())
}
