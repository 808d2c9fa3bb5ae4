package hostagent_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/contrib/nats/hostagent"
	"github.com/faasplane/faas/contrib/nats/natstest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// A host agent for node-a reads its pods from a file (here one warm pod,
// whose agent is not running: no instance, no verdict) and publishes its
// heartbeats, which a dataplane's health.Source receives.
func Example() {
	srv, err := natstest.Start(natstest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	nc, err := natstest.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	dir, err := os.MkdirTemp("", "hostagent-example-*")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pods := filepath.Join(dir, "pods.json")
	err = hostagent.WritePods(pods, []warmpool.Pod{{ID: "pod-1", Node: "node-a",
		Control: lifecycle.Control{Addr: "127.0.0.1:1", Token: lifecycle.NewControlToken()}}})
	if err != nil {
		log.Fatal(err)
	}

	subjects, _ := health.NewSubjects("")
	sub, err := nc.SubscribeSync(subjects.Node("node-a"))
	if err != nil {
		log.Fatal(err)
	}
	a, err := hostagent.New(hostagent.Config{Node: "node-a", Pods: hostagent.FileLister{Path: pods}, Conn: nc})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		log.Fatal(err)
	}
	msg, err := health.Decode(m.Data)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg.Kind, msg.Node, "pods not up:", len(msg.Pods), "every", time.Duration(msg.HeartbeatMillis)*time.Millisecond)
	// Output: heartbeat node-a pods not up: 0 every 1s
}
