package etcdtest_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A server outside a test (tests call Start(t)), stopped and resumed
// behind the same endpoint: its data and leases survive.
func ExampleStartEmbedded() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "etcdtest-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	srv, err := etcdtest.StartEmbedded(ctx, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	client, err := srv.NewClient()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()

	lease, err := client.Grant(ctx, 30)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := client.Put(ctx, "greeting", "hello", clientv3.WithLease(lease.ID)); err != nil {
		fmt.Println(err)
		return
	}
	endpoint := srv.Endpoint()
	srv.Stop()
	fmt.Println("running:", srv.Running())
	if err := srv.Resume(ctx); err != nil {
		fmt.Println(err)
		return
	}
	r, err := client.Get(ctx, "greeting")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("same endpoint:", srv.Endpoint() == endpoint)
	fmt.Printf("%s, on the same lease: %v\n", r.Kvs[0].Value, clientv3.LeaseID(r.Kvs[0].Lease) == lease.ID)
	// Output:
	// running: false
	// same endpoint: true
	// hello, on the same lease: true
}
