package natstest_test

import (
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faasplane/faas/contrib/nats/natstest"
)

// A server in the test process, a client, and one request answered.
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
	sub, err := nc.Subscribe("greet", func(m *nats.Msg) { _ = m.Respond([]byte("hello, " + string(m.Data))) })
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Unsubscribe()
	reply, err := nc.Request("greet", []byte("world"), 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply.Data))
	// Output: hello, world
}
