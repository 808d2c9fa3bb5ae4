package leasetest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/warmpool"
	"github.com/faasplane/faas/warmpool/leasetest"
)

// A store's own tests run the suite with a fresh harness per subtest. A
// store on real time (etcd) would leave Advance nil and set a short TTL.
func ExampleTestLeaseStore() {
	open := func(t *testing.T) leasetest.Harness {
		s := warmpool.NewMemLeaseStore(clock.System())
		return leasetest.Harness{
			Leases:      []warmpool.LeaseStore{s},
			Memberships: []warmpool.Membership{s},
			TTL:         200 * time.Millisecond,
		}
	}
	// A test passes open to leasetest.TestLeaseStore and
	// leasetest.TestMembership, which call it once per subtest.
	h := open(nil)
	fmt.Println(len(h.Leases), len(h.Memberships), h.TTL)
	// Output: 1 1 200ms
}
