package etcd_test

import (
	"testing"
	"time"

	"github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/faasplane/faas/warmpool"
	"github.com/faasplane/faas/warmpool/leasetest"
)

// openHarness returns the suite's harness on one server: for each subtest,
// two stores with a fresh prefix on two clients, as two processes would
// have, on real time with etcd's minimum TTL.
func openHarness(t *testing.T) func(t *testing.T) leasetest.Harness {
	srv := etcdtest.Start(t)
	c1, c2 := srv.Client(t), srv.Client(t)
	return func(t *testing.T) leasetest.Harness {
		a := newStore(t, c1, etcd.Config{})
		b := newStore(t, c2, etcd.Config{})
		return leasetest.Harness{
			Leases:      []warmpool.LeaseStore{a, b},
			Memberships: []warmpool.Membership{a, b},
			TTL:         time.Second,
		}
	}
}

func TestConformanceLeaseStore(t *testing.T) {
	leasetest.TestLeaseStore(t, openHarness(t))
}

func TestConformanceMembership(t *testing.T) {
	leasetest.TestMembership(t, openHarness(t))
}
