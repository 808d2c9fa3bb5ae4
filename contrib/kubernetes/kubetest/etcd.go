package kubetest

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEtcd runs a single-member etcd in this process, its data in
// dir/etcd, listening on loopback ports the kernel picks. In-process rather
// than Debian's etcd: that one is 3.4, whose watches kube-apiserver 1.37
// rejects ("Too large resource version").
func startEtcd(ctx context.Context, dir string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "kubetest"
	cfg.Dir = filepath.Join(dir, "etcd")
	// Port 0 everywhere: the member never talks to a peer, and its client
	// address is read back from the listener below.
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{local}
	cfg.AdvertiseClientUrls = []url.URL{local}
	cfg.ListenPeerUrls = []url.URL{local}
	cfg.AdvertisePeerUrls = []url.URL{local}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// "fatal" only: etcd logs every request at info, and "mux: server
	// closed" lines at Close.
	cfg.LogLevel = "fatal"
	// A test's data never needs to survive a power cut.
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("kubetest: start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", fmt.Errorf("kubetest: etcd failed while starting: %w", err)
	case <-ctx.Done():
		e.Server.Stop() // ReadyNotify never fires now; Close alone would wait for it
		e.Close()
		return nil, "", fmt.Errorf("kubetest: etcd not ready: %w", context.Cause(ctx))
	}
	return e, "http://" + e.Clients[0].Addr().String(), nil
}
