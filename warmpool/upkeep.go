package warmpool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/sharding"
)

// run is the background loop: an upkeep round every RenewInterval, and a
// replenishment whenever a Take or a failed creation kicks it or a backoff
// ends.
func (m *Manager) run() {
	timer := m.clock.NewTimer(0) // the first round at once
	defer timer.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-timer.C():
			m.mu.Lock()
			due := !m.now().Before(m.nextTickAt)
			m.mu.Unlock()
			if due {
				if err := m.Tick(m.ctx); err != nil && m.ctx.Err() == nil {
					m.log.Warn("warmpool: upkeep round", "err", err)
				}
			} else {
				m.replenish(false)
			}
		case <-m.kickCh:
			m.replenish(false)
		}
		timer.Reset(m.untilWake())
	}
}

// untilWake returns the time to the next round or the end of the earliest
// backoff of a pool that needs pods, whichever comes first.
func (m *Manager) untilWake() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	wake := m.nextTickAt
	for _, p := range m.poolList {
		if p.retryAt.After(now) && p.retryAt.Before(wake) {
			wake = p.retryAt
		}
	}
	return max(wake.Sub(now), time.Millisecond)
}

// Tick runs one upkeep round: it renews the manager's heartbeat and reads
// the membership, renews its leases in one batch, hands over the pods that
// now belong to another manager and adopts the unowned pods that belong to
// it, updates the pools' targets, probes the idle pods that are due, and
// starts the creations the pools need. The background loop calls it every
// RenewInterval; with Config.Manual, the caller does, and Tick then waits
// for the probes, creations and deletions it started. A pool that holds
// more than its Max (after adopting another manager's pods) deletes its
// oldest idle pods; between its target and Max, idle pods stay until they
// are taken. It returns the errors of the
// membership and of the provider's List (the rest of the round still runs).
func (m *Manager) Tick(ctx context.Context) error {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	if m.isClosed() {
		return ErrClosed
	}
	m.mu.Lock()
	m.nextTickAt = m.now().Add(m.cfg.RenewInterval)
	m.mu.Unlock()
	errMembers := m.syncMembership(ctx)
	m.renew(ctx)
	errList := m.rebalance(ctx)
	m.mu.Lock()
	now := m.now()
	var trim []*entry
	for _, p := range m.poolList {
		p.target = min(max(p.sizer.Target(now), 0), p.max)
		m.dispatchLocked(p) // node health may have changed
		// Beyond Max (after adoptions), the oldest idle pods go.
		for len(p.idle) > 0 && len(p.idle)+p.pending > p.max {
			e := p.idle[0]
			m.dropLocked(e)
			trim = append(trim, e)
		}
	}
	m.mu.Unlock()
	for _, e := range trim {
		if m.cfg.Manual {
			m.retire(e, true)
		} else {
			m.wg.Go(func() { m.retire(e, true) })
		}
	}
	m.probeDue()
	m.replenish(m.cfg.Manual)
	return errors.Join(errMembers, errList)
}

func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// syncMembership heartbeats and rebuilds the sharding table when the set of
// live managers changed. The manager always counts itself in: it knows it
// is alive, and dropping itself on a failed heartbeat would release all its
// pods for nothing.
func (m *Manager) syncMembership(ctx context.Context) error {
	var errs []error
	self := m.cfg.self()
	if err := m.membership.Heartbeat(ctx, self, m.cfg.LeaseTTL); err != nil {
		errs = append(errs, fmt.Errorf("warmpool: heartbeat: %w", err))
	}
	members, err := m.membership.Members(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("warmpool: members: %w", err))...)
	}
	if !slices.ContainsFunc(members, func(x Member) bool { return x.ID == self.ID }) {
		members = append(members, self)
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	members = slices.CompactFunc(members, func(a, b Member) bool { return a.ID == b.ID })
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.Equal(members, m.members) {
		return errors.Join(errs...)
	}
	nodes := make([]sharding.Node, len(members))
	for i, x := range members {
		nodes[i] = sharding.Node{ID: x.ID, Weight: cmp.Or(x.Weight, 1)}
	}
	t, err := sharding.New(nodes...)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("warmpool: members: %w", err))...)
	}
	m.table, m.members = t, members
	return errors.Join(errs...)
}

// ownsLocked reports whether the current table assigns pod id to this
// manager.
func (m *Manager) ownsLocked(id string) bool {
	n, ok := m.table.Pick(id)
	return ok && n.ID == m.cfg.ID
}

// renew extends the leases of the held and the claimed pods in one batch,
// and forgets the pods whose lease was lost. A claim must be renewed too: it
// lapses with its holder, so that the instances of a dead manager can be
// adopted and deleted.
func (m *Manager) renew(ctx context.Context) {
	m.mu.Lock()
	leases := make([]Lease, 0, len(m.held)+len(m.claimed))
	for _, e := range m.held {
		leases = append(leases, e.lease)
	}
	for _, c := range m.claimed {
		leases = append(leases, c.lease)
	}
	m.mu.Unlock()
	if len(leases) == 0 {
		return
	}
	renewed, err := m.leases.Renew(ctx, leases, m.cfg.LeaseTTL)
	if err != nil || len(renewed) != len(leases) {
		// The leases lapse at the Expires they had: until the store
		// answers again, no pod is handed out past it.
		m.log.Warn("warmpool: lease renewal failed", "leases", len(leases), "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, l := range renewed {
		key, token := leases[i].Key, leases[i].Token
		if c, ok := m.claimed[key]; ok && c.lease.Token == token {
			if l.Token == 0 {
				delete(m.claimed, key)
				m.leasesLost++
				m.log.Warn("warmpool: the claim on a pod in use lapsed; another manager may delete it", "pod", key)
				continue
			}
			c.lease = l
			m.claimed[key] = c
			continue
		}
		e := m.held[key]
		if e == nil || e.lease.Token != token {
			continue // taken or dropped meanwhile
		}
		if l.Token == 0 {
			m.dropLocked(e)
			m.leasesLost++
			continue
		}
		e.lease = l
	}
}

// rebalance compares the held pods with the provider's: it releases the
// pods that vanished or that another manager owns now, and acquires the
// unowned pods this manager owns. With a private lease store it never
// adopts a pod another manager created, and reports it (an error wrapping
// ErrSharedPopulation).
func (m *Manager) rebalance(ctx context.Context) error {
	// Pods added to held or claimed after this point may be missing from
	// the list (created or taken concurrently): only those added before
	// can have vanished.
	m.mu.Lock()
	listSeq := m.seq
	m.mu.Unlock()
	pods, err := m.provider.List(ctx)
	if err != nil {
		return fmt.Errorf("warmpool: list pods: %w", err)
	}
	exists := make(map[string]bool, len(pods))
	for _, p := range pods {
		exists[p.ID] = true
	}
	var release []*entry
	var adopt []Pod
	m.mu.Lock()
	for id, e := range m.held {
		switch {
		case !exists[id] && e.seq <= listSeq:
			m.dropLocked(e) // deleted behind our back
			release = append(release, e)
		case exists[id] && !m.ownsLocked(id):
			m.dropLocked(e)
			release = append(release, e)
			m.handedOver++
		}
	}
	now := m.now()
	for id, at := range m.claimedSeen {
		if !exists[id] || now.Sub(at) >= m.cfg.LeaseTTL/2 {
			delete(m.claimedSeen, id)
		}
	}
	for id, seq := range m.deleting {
		if !exists[id] && seq <= listSeq {
			delete(m.deleting, id) // gone, as seen by a list taken after Delete began
		}
	}
	// Pods handed out and since deleted by someone else than Delete: their
	// claims go with them.
	var gone []Lease
	for id, c := range m.claimed {
		if !exists[id] && c.seq <= listSeq {
			delete(m.claimed, id)
			gone = append(gone, c.lease)
		}
	}
	var foreign []string
	for _, pod := range pods {
		if _, gone := m.deleting[pod.ID]; gone || m.pools[pod.Runtime] == nil || m.held[pod.ID] != nil || m.taking[pod.ID] {
			continue
		}
		if pod.Labels[FunctionLabel] != "" {
			continue // a function's own pod, never a pool's
		}
		if _, ok := m.claimed[pod.ID]; ok || !m.ownsLocked(pod.ID) {
			continue
		}
		if _, seen := m.claimedSeen[pod.ID]; seen {
			continue
		}
		if h := pod.Labels[HolderLabel]; m.private && h != "" && h != m.holder {
			foreign = append(foreign, pod.ID+" (created by "+h+")")
			continue
		}
		adopt = append(adopt, pod)
	}
	m.foreign = len(foreign)
	m.mu.Unlock()
	var errForeign error
	if len(foreign) > 0 {
		errForeign = fmt.Errorf("%w: %d pods were created by other managers, e.g. %s; give every manager of the population the same LeaseStore and Membership", ErrSharedPopulation, len(foreign), foreign[0])
	}

	for _, e := range release {
		_ = m.leases.Release(ctx, e.lease) // a lost lease needs no release
	}
	for _, l := range gone {
		_ = m.leases.Release(ctx, l)
	}
	type adoption struct {
		pod   Pod
		lease Lease
	}
	var acquired []adoption
	for _, pod := range adopt {
		l, err := m.leases.Acquire(ctx, pod.ID, m.holder, m.cfg.LeaseTTL)
		switch {
		case errors.Is(err, ErrClaimed):
			m.mu.Lock()
			m.claimedSeen[pod.ID] = m.now()
			m.mu.Unlock()
			continue
		case errors.Is(err, ErrLeaseHeld):
			continue // its owner has not handed it over yet, or its lease has not lapsed
		case err != nil:
			m.log.Warn("warmpool: acquiring a lease failed", "pod", pod.ID, "err", err)
			continue
		}
		acquired = append(acquired, adoption{pod, l})
	}
	if len(acquired) == 0 {
		return errForeign
	}
	// The list above may predate a deletion: a pod handed out and deleted
	// since (by this or another manager, which then released its claim)
	// is still in it, and its lease was free to acquire. A list taken after
	// the leases were acquired tells: a pod missing from it is gone.
	again, err := m.provider.List(ctx)
	if err != nil {
		for _, a := range acquired {
			_ = m.leases.Release(ctx, a.lease)
		}
		return errors.Join(errForeign, fmt.Errorf("warmpool: list pods: %w", err))
	}
	still := make(map[string]bool, len(again))
	for _, p := range again {
		still[p.ID] = true
	}
	for _, a := range acquired {
		pod, l := a.pod, a.lease
		if !still[pod.ID] {
			_ = m.leases.Release(ctx, l)
			continue
		}
		m.mu.Lock()
		if _, gone := m.deleting[pod.ID]; m.closed || gone {
			m.mu.Unlock()
			_ = m.leases.Release(ctx, l)
			continue
		}
		p := m.pools[pod.Runtime]
		e := &entry{pod: pod, lease: l, pool: p}
		m.addHeldLocked(e)
		m.adopted++
		if m.cfg.ProbeInterval < 0 {
			e.idle = true
			p.idle = append(p.idle, e)
			m.dispatchLocked(p)
		} else {
			p.pending++ // joins the pool once a probe says it is alive and generic
		}
		m.mu.Unlock()
	}
	return errForeign
}

// probeDue probes the held pods whose probe is due: adopted pods before
// they join the pool, idle pods every ProbeInterval.
func (m *Manager) probeDue() {
	if m.cfg.ProbeInterval < 0 {
		return
	}
	m.mu.Lock()
	now := m.now()
	var due []*entry
	for _, p := range m.poolList {
		for _, e := range p.idle {
			if !e.probing && !now.Before(e.nextProbe) {
				due = append(due, e)
			}
		}
	}
	for _, e := range m.held {
		if !e.idle && !e.probing {
			due = append(due, e)
		}
	}
	if !m.cfg.Manual {
		due = due[:min(len(due), m.cfg.MaxParallelProbes-m.probing)]
	}
	for _, e := range due {
		e.probing = true
	}
	m.probing += len(due)
	m.mu.Unlock()
	for _, e := range due {
		if m.cfg.Manual {
			m.probe(e)
		} else {
			m.wg.Go(func() { m.probe(e) })
		}
	}
}

// probe probes one pod and acts on the answer: a pending pod that passes
// joins the pool; a pod that fails leaves it and is deleted, unless it was
// idle in the pool and answered with a function loaded (then only its lease
// is released).
func (m *Manager) probe(e *entry) {
	err := m.prober.Probe(m.ctx, e.pod)
	m.mu.Lock()
	e.probing = false
	m.probing--
	if m.held[e.pod.ID] != e {
		m.mu.Unlock() // taken or dropped meanwhile
		return
	}
	if err == nil {
		e.nextProbe = m.now().Add(m.cfg.ProbeInterval)
		if !e.idle {
			e.pool.pending--
			e.idle = true
			e.pool.idle = append(e.pool.idle, e)
			m.dispatchLocked(e.pool)
		}
		m.mu.Unlock()
		return
	}
	if m.ctx.Err() != nil {
		m.mu.Unlock() // closing: not the pod's fault
		return
	}
	adopted := !e.idle
	m.dropLocked(e)
	e.pool.probeFailures++
	m.mu.Unlock()
	m.log.Warn("warmpool: probe failed; pod leaves the pool", "pod", e.pod.ID, "err", err)
	// A pod that answers with a function loaded is somebody's instance,
	// and is left alone, unless it was just adopted: its lease was free,
	// so the claim of the manager that handed it out lapsed, and nobody
	// routes to it any more.
	m.retire(e, adopted || !errors.Is(err, ErrNotIdle))
}

// retire deletes a pod that left the pool (when del) and releases its
// lease.
func (m *Manager) retire(e *entry, del bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), m.cfg.CreateTimeout)
	defer cancel()
	if del {
		if err := m.deleteLeased(ctx, e); err != nil {
			m.log.Warn("warmpool: deleting a pod failed", "pod", e.pod.ID, "err", err)
		}
		return
	}
	_ = m.leases.Release(ctx, e.lease)
}

// deleteLeased deletes a pod the manager holds, if its lease is still the
// manager's: the lease is claimed first, so that nobody can adopt the pod
// between the check and the deletion, then released. A manager that lost
// the lease (paused past its TTL, cut off from the store) must not delete
// a pod another manager may have adopted since; when the store cannot say,
// the pod is left to its lease's lapse and its next owner.
func (m *Manager) deleteLeased(ctx context.Context, e *entry) error {
	if err := m.leases.Claim(ctx, e.lease); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return nil // not ours any more: its new owner decides
		}
		return fmt.Errorf("claiming it before the deletion: %w", err)
	}
	if err := m.provider.Delete(ctx, e.pod.ID); err != nil && !errors.Is(err, ErrPodNotFound) {
		return err // the claim lapses unless released; keep it until then
	}
	_ = m.leases.Release(ctx, e.lease)
	return nil
}

// watch drops the pods the provider reports deleted as the events come,
// and subscribes again when the watcher falls behind.
func (m *Manager) watch(w PodWatcher) {
	for m.ctx.Err() == nil {
		ch, err := w.Watch(m.ctx)
		if err == nil {
			for ev := range ch {
				if ev.Type == PodDeleted {
					m.podGone(ev.Pod.ID)
				}
			}
		}
		if clock.Sleep(m.ctx, m.clock, m.cfg.RenewInterval) != nil {
			return
		}
	}
}

func (m *Manager) podGone(id string) {
	m.mu.Lock()
	e := m.held[id]
	if e != nil {
		m.dropLocked(e)
	}
	delete(m.claimedSeen, id)
	m.mu.Unlock()
	if e != nil {
		_ = m.leases.Release(m.ctx, e.lease)
		m.kick()
	}
}
