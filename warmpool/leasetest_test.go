package warmpool_test

import (
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/warmpool"
	"github.com/faasplane/faas/warmpool/leasetest"
)

// stepClock is a clock whose Now only moves when told (the store reads
// nothing else of it).
type stepClock struct {
	clock.Clock
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func memHarness(t *testing.T) leasetest.Harness {
	clk := &stepClock{Clock: clock.System(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := warmpool.NewMemLeaseStore(clk)
	return leasetest.Harness{
		Leases:      []warmpool.LeaseStore{s},
		Memberships: []warmpool.Membership{s},
		TTL:         10 * time.Second,
		Advance:     clk.Advance,
	}
}

func TestMemLeaseStoreConformance(t *testing.T) { leasetest.TestLeaseStore(t, memHarness) }

func TestMemMembershipConformance(t *testing.T) { leasetest.TestMembership(t, memHarness) }

// On real time (Advance nil) the suite polls for expiries, as it does for
// etcd.
func TestMemLeaseStoreConformanceOnRealTime(t *testing.T) {
	open := func(t *testing.T) leasetest.Harness {
		s := warmpool.NewMemLeaseStore(clock.System())
		return leasetest.Harness{Leases: []warmpool.LeaseStore{s}, Memberships: []warmpool.Membership{s}, TTL: 100 * time.Millisecond}
	}
	leasetest.TestLeaseStore(t, open)
	leasetest.TestMembership(t, open)
}
