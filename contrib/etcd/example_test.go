package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/faasplane/faas/warmpool"
)

// A store on a real etcd (embedded here; in production, a client of the
// cluster's etcd). Managers use it as their warmpool.Config's Leases and
// Membership; the calls below are the ones a Manager makes.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "etcd-example")
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

	store, err := etcd.New(client, etcd.Config{Prefix: "/faasplane/cluster-a/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	// Config{Leases: store, Membership: store} shares the pods with every
	// manager of the same prefix.
	var _ = warmpool.Config{Leases: store, Membership: store}

	const ttl = 5 * time.Second
	l, err := store.Acquire(ctx, "pod-1", "node-a-1", ttl)
	fmt.Println("acquired:", err == nil, l.Holder)
	_, err = store.Acquire(ctx, "pod-1", "node-b-1", ttl)
	fmt.Println("another holder:", errors.Is(err, warmpool.ErrLeaseHeld))
	fmt.Println("claim:", store.Claim(ctx, l))
	_, err = store.Acquire(ctx, "pod-1", "node-b-1", ttl)
	fmt.Println("claimed:", errors.Is(err, warmpool.ErrClaimed))
	r, err := store.Renew(ctx, []warmpool.Lease{l}, ttl)
	fmt.Println("renewed:", err == nil && r[0].Token == l.Token)

	if err := store.Heartbeat(ctx, warmpool.Member{ID: "node-a", Addr: "10.0.0.1:8080", Weight: 1}, ttl); err != nil {
		fmt.Println(err)
	}
	members, err := store.Members(ctx)
	fmt.Println("members:", members, err)
	fmt.Println("release:", store.Release(ctx, r[0]))
	fmt.Println("leave:", store.Leave(ctx, "node-a"))
	// Output:
	// acquired: true node-a-1
	// another holder: true
	// claim: <nil>
	// claimed: true
	// renewed: true
	// members: [{node-a 10.0.0.1:8080 1}] <nil>
	// release: <nil>
	// leave: <nil>
}
