package warmpool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// replenish starts the creations the pools need: per pool, its target plus
// its waiting Takes, minus its available and pending pods and the creations
// in flight, within the global bound on parallel creations and outside the
// pool's backoff. With wait (Manual), it runs them one after another before
// returning; otherwise each runs in its own goroutine.
func (m *Manager) replenish(wait bool) {
	var jobs []*pool
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	now := m.now()
	for _, p := range m.poolList {
		if now.Before(p.retryAt) {
			continue
		}
		deficit := p.target + len(p.waiters) - m.availableLocked(p, now) - p.pending - p.creating
		for ; deficit > 0 && m.creatingTotal < m.cfg.MaxParallelCreates; deficit-- {
			p.creating++
			m.creatingTotal++
			jobs = append(jobs, p)
		}
	}
	m.mu.Unlock()
	for _, p := range jobs {
		if wait {
			m.create(p)
		} else {
			m.wg.Go(func() { m.create(p) })
		}
	}
}

// availableLocked counts p's idle pods that a Take could have now.
func (m *Manager) availableLocked(p *pool, now time.Time) int {
	n := 0
	for _, e := range p.idle {
		if e.lease.Valid(now) && m.health.NodeHealthy(e.pod.Node) {
			n++
		}
	}
	return n
}

// create creates one pod for p and acquires its lease.
func (m *Manager) create(p *pool) {
	name := m.podName(p.runtime)
	start := m.now()
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.CreateTimeout)
	defer cancel()
	pod, err := m.provider.Create(ctx, PodSpec{Name: name, Runtime: p.runtime, Labels: p.labels})
	created := err == nil
	if err == nil {
		err = checkCreated(&pod, p.runtime)
	}
	var l Lease
	adoptedAlready := false
	if err == nil {
		l, err = m.leases.Acquire(ctx, pod.ID, m.holder, m.cfg.LeaseTTL)
		// An upkeep round may have listed and adopted the new pod before
		// this acquire (here or in another manager): it is in a pool
		// already, not lost.
		adoptedAlready = errors.Is(err, ErrLeaseHeld) || errors.Is(err, ErrClaimed)
	}
	end := m.now()
	m.mu.Lock()
	p.creating--
	m.creatingTotal--
	switch {
	case adoptedAlready:
		p.failures, p.retryAt = 0, end
		p.created++
		p.sizer.ObserveCreate(end, end.Sub(start))
		m.mu.Unlock()
		return
	case err != nil:
		p.failures++
		p.createFailures++
		m.rngMu.Lock()
		r := m.rng.Float64()
		m.rngMu.Unlock()
		p.retryAt = end.Add(m.backoff.Delay(p.failures, r))
		m.mu.Unlock()
		if m.ctx.Err() == nil {
			m.log.Warn("warmpool: pod creation failed", "runtime", p.runtime, "failures", p.failures, "err", err)
		}
		if created {
			m.retire(&entry{pod: pod, lease: l}, true)
		}
		m.kick() // the loop must wake when the backoff ends
		return
	}
	p.failures, p.retryAt = 0, end
	p.created++
	p.sizer.ObserveCreate(end, end.Sub(start))
	if m.closed {
		m.mu.Unlock()
		m.retire(&entry{pod: pod, lease: l}, !m.cfg.KeepIdleOnClose)
		return
	}
	e := &entry{pod: pod, lease: l, pool: p, idle: true, nextProbe: end.Add(m.cfg.ProbeInterval)}
	m.addHeldLocked(e)
	p.idle = append(p.idle, e)
	m.dispatchLocked(p)
	m.mu.Unlock()
}

// checkCreated checks a provider's answer; an empty runtime is filled in.
func checkCreated(pod *Pod, runtime string) error {
	if pod.Runtime == "" {
		pod.Runtime = runtime
	}
	switch {
	case pod.ID == "" || pod.Addr == "":
		return fmt.Errorf("warmpool: provider returned a pod without an ID or an address: %+v", *pod)
	case pod.Runtime != runtime:
		return fmt.Errorf("warmpool: asked for runtime %q, provider created %q", runtime, pod.Runtime)
	}
	return nil
}

// podName returns a fresh pod name that the current sharding table
// assigns to this manager, so that the new pod needs no handover. Names are
// the runtime, sanitized for Kubernetes, and a random suffix.
func (m *Manager) podName(runtime string) string {
	m.mu.Lock()
	table := m.table
	m.mu.Unlock()
	prefix := sanitizeName(runtime)
	var name string
	// Each try lands on this manager with probability 1/members.
	for range 32 * table.Len() {
		name = prefix + "-" + m.randSuffix()
		if n, ok := table.Pick(name); ok && n.ID == m.cfg.ID {
			break
		}
	}
	return name
}

const suffixAlphabet = "0123456789abcdefghijklmnopqrstuv"

func (m *Manager) randSuffix() string {
	m.rngMu.Lock()
	x := m.rng.Uint64()
	m.rngMu.Unlock()
	var b [12]byte
	for i := range b {
		b[i] = suffixAlphabet[x&31]
		x >>= 5
	}
	return string(b[:])
}

// sanitizeName maps a runtime name to lowercase letters, digits, '-' and
// '.', at most 40 bytes, starting and ending with a letter or digit.
func sanitizeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 40; i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.':
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		default:
			c = '-'
		}
		b.WriteByte(c)
	}
	out := strings.Trim(b.String(), "-.")
	if out == "" {
		return "pod"
	}
	return out
}
