package faastest

import (
	"context"
	"errors"
	"sync"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// ErrUnhealthy is the error a [HealthChecker] reports for an instance made
// unhealthy with SetHealthy or Flip.
var ErrUnhealthy = errors.New("faastest: instance unhealthy")

// HealthChecker is a fake router.HealthChecker for tests: every instance
// is healthy until the test says otherwise, by instance ID, and every
// check is counted. It is safe for concurrent use; a check sees the
// verdict in force when it runs.
type HealthChecker struct {
	mu     sync.Mutex
	errs   map[string]error // the verdict of instances that are not healthy
	checks map[string]int
	total  int
}

// NewHealthChecker returns a checker that finds every instance healthy.
func NewHealthChecker() *HealthChecker {
	return &HealthChecker{errs: make(map[string]error), checks: make(map[string]int)}
}

// Check implements router.HealthChecker: nil for a healthy instance, the
// error set for the instance otherwise, ctx.Err() when ctx is done.
func (h *HealthChecker) Check(ctx context.Context, inst *lifecycle.Instance) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[inst.ID]++
	h.total++
	return h.errs[inst.ID]
}

// SetHealthy sets the verdict of instance id: healthy, or failing with
// ErrUnhealthy.
func (h *HealthChecker) SetHealthy(id string, healthy bool) {
	if healthy {
		h.SetError(id, nil)
	} else {
		h.SetError(id, ErrUnhealthy)
	}
}

// SetReassigned makes the checks of instance id answer that its address
// serves another function now (lifecycle.CodeInstanceReassigned), which
// removes it from the routes at once.
func (h *HealthChecker) SetReassigned(id string) { h.SetError(id, lifecycle.CodeInstanceReassigned) }

// SetError makes the checks of instance id fail with err (nil: healthy).
func (h *HealthChecker) SetError(id string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.errs, id)
	} else {
		h.errs[id] = err
	}
}

// Flip turns instance id from healthy to unhealthy or back, and returns
// whether it is healthy now.
func (h *HealthChecker) Flip(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, bad := h.errs[id]; bad {
		delete(h.errs, id)
		return true
	}
	h.errs[id] = ErrUnhealthy
	return false
}

// Healthy reports whether checks of instance id succeed now.
func (h *HealthChecker) Healthy(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, bad := h.errs[id]
	return !bad
}

// Checks returns how many times instance id was checked; an empty id
// returns the checks of all instances.
func (h *HealthChecker) Checks(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id == "" {
		return h.total
	}
	return h.checks[id]
}

var _ router.HealthChecker = (*HealthChecker)(nil)
