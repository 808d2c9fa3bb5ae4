package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/faasplane/faas/lifecycle"
)

// MemoryEnforcement selects how the agent enforces an instance's memory
// limit (lifecycle.Limits.MemoryBytes).
type MemoryEnforcement string

// The ways to enforce a memory limit.
const (
	// MemoryAuto (the default) uses a cgroup v2 when the agent can create
	// one under its own (with the memory controller), else a process
	// limit. A v2 cgroup costs nothing on the cold-start path: the kernel
	// creates the process in it (CLONE_INTO_CGROUP), and a hot-load
	// bootstrap starts in the cgroup reserved for its function.
	MemoryAuto MemoryEnforcement = ""
	// MemoryCgroup uses a cgroup — v2, else the v1 memory hierarchy — or
	// fails the load when the agent cannot create one. With v1 an exec'd
	// process is moved into its cgroup after it starts, which waits for an
	// RCU grace period: 5 to 15 ms more per cold start (measured), which is
	// why MemoryAuto does not use v1.
	MemoryCgroup MemoryEnforcement = "cgroup"
	// MemoryRlimit uses a process limit: once the function serves, its
	// RLIMIT_DATA is set to its data size then plus the limit, so that it
	// may grow by the limit beyond what its runtime reserved at start (an
	// RLIMIT_AS of the limit itself would kill any Go program, which
	// reserves some 1.6 GiB of address space at start, and any Node.js one,
	// 0.7 GiB). Allocations beyond it fail; the process usually exits, and
	// the agent reports it as over its limit when its last output said so.
	MemoryRlimit MemoryEnforcement = "rlimit"
	// MemoryNone enforces nothing: the limit only reaches the function as
	// FAAS_MEMORY_BYTES.
	MemoryNone MemoryEnforcement = "none"
)

func (m MemoryEnforcement) valid() bool {
	switch m {
	case MemoryAuto, MemoryCgroup, MemoryRlimit, MemoryNone:
		return true
	}
	return false
}

// ErrNoCgroup is returned (wrapped) when a load needs a cgroup
// ([MemoryCgroup]) that the agent cannot create.
var ErrNoCgroup = errors.New("agent: no usable cgroup")

// limiter enforces limits for one agent: it knows the cgroup under which
// it creates one child per function process, if any.
type limiter struct {
	mode   MemoryEnforcement
	cg     *cgroupParent // nil: no usable cgroup
	cgErr  error         // why there is none
	prefix string        // of the children's names, unique per agent
	seq    atomic.Int64
}

func newLimiter(mode MemoryEnforcement, parent string) *limiter {
	// Agents of one process (tests, embedders) get prefixes of their own.
	var id [4]byte
	_, _ = rand.Read(id[:])
	l := &limiter{mode: mode, prefix: fmt.Sprintf("faas-%d-%x-", os.Getpid(), id)}
	if mode == MemoryNone || mode == MemoryRlimit {
		return l
	}
	l.cg, l.cgErr = findCgroup(parent, mode == MemoryCgroup)
	return l
}

// limits are the limits of one function process and how they are
// enforced.
type limits struct {
	memBytes, milliCPU int64
	mem, cpu           string // lifecycle.MemoryLimit... mechanisms
	cg                 *cgroupChild
}

// prepare decides how to enforce memBytes and milliCPU and creates the
// cgroup when one is used. The caller releases the result.
func (l *limiter) prepare(memBytes, milliCPU int64) (*limits, error) {
	return l.limit(nil, memBytes, milliCPU)
}

// reserve creates an empty cgroup for a process whose limits come later: a
// hot-load bootstrap, placed in it when it starts, because moving a
// process between cgroups waits for an RCU grace period (milliseconds, on
// the cold-start path). Nil when the agent uses no cgroups.
func (l *limiter) reserve() *limits {
	if l.cg == nil || l.mode == MemoryNone || l.mode == MemoryRlimit {
		return nil
	}
	cg, err := l.cg.create(l.name(), 0, 0, true)
	if err != nil {
		return nil
	}
	return &limits{cg: cg, mem: lifecycle.MemoryLimitNone, cpu: lifecycle.MemoryLimitNone}
}

func (l *limiter) name() string { return l.prefix + strconv.FormatInt(l.seq.Add(1), 10) }

// limit decides how to enforce memBytes and milliCPU: in the reserved
// cgroup when there is one, else in a new one when the mode and the host
// allow, else with a process limit. The caller releases the result.
func (l *limiter) limit(reserved *limits, memBytes, milliCPU int64) (*limits, error) {
	lim := &limits{memBytes: memBytes, milliCPU: milliCPU, mem: lifecycle.MemoryLimitNone, cpu: lifecycle.MemoryLimitNone}
	if reserved != nil {
		lim.cg = reserved.cg
	}
	useCgroup := l.mode == MemoryAuto || l.mode == MemoryCgroup
	if memBytes > 0 && l.mode == MemoryCgroup && l.cg == nil {
		return lim, fmt.Errorf("%w: %v", ErrNoCgroup, l.cgErr)
	}
	var err error
	switch {
	case lim.cg != nil && (memBytes > 0 || milliCPU > 0):
		err = lim.cg.setLimits(memBytes, milliCPU)
	case lim.cg == nil && l.cg != nil && useCgroup && (memBytes > 0 || milliCPU > 0):
		lim.cg, err = l.cg.create(l.name(), memBytes, milliCPU, false)
	}
	switch {
	case err != nil && l.mode == MemoryCgroup && memBytes > 0:
		return lim, fmt.Errorf("%w: %v", ErrNoCgroup, err)
	case err == nil && lim.cg != nil:
		if memBytes > 0 {
			lim.mem = lim.cg.mechanism()
		}
		if milliCPU > 0 && lim.cg.cpuLimited() {
			lim.cpu = lim.cg.mechanism()
		}
	}
	if memBytes > 0 && lim.mem == lifecycle.MemoryLimitNone && (l.mode == MemoryAuto || l.mode == MemoryRlimit) {
		lim.mem = lifecycle.MemoryLimitRlimit
	}
	return lim, nil
}

// procAttr places a process in the cgroup as it is created, where the
// kernel can (cgroup v2).
func (lim *limits) procAttr(attr *syscall.SysProcAttr) {
	if lim != nil && lim.cg != nil {
		lim.cg.procAttr(attr)
	}
}

// enter moves a running process (a hot-loaded bootstrap, or one that the
// kernel could not place at its creation) into the cgroup.
func (lim *limits) enter(pid int) error {
	if lim == nil || lim.cg == nil {
		return nil
	}
	return lim.cg.enter(pid)
}

// serving applies what can only be applied once the process serves: the
// process limit, relative to its size then.
func (lim *limits) serving(pid int) error {
	if lim == nil || lim.mem != lifecycle.MemoryLimitRlimit {
		return nil
	}
	return limitData(pid, lim.memBytes)
}

// overLimit reports whether the process that just exited was ended for
// exceeding its memory limit: the cgroup counted an OOM kill, or, under a
// process limit, it failed and said it ran out of memory.
func (lim *limits) overLimit(st *os.ProcessState, oomHint bool) bool {
	if lim == nil || st == nil || st.Success() {
		return false
	}
	switch {
	case lim.cg != nil && lim.memBytes > 0:
		return lim.cg.oomKilled()
	case lim.mem == lifecycle.MemoryLimitRlimit:
		return oomHint
	}
	return false
}

// describe names the limit for messages: "cgroup1, 64 MiB".
func (lim *limits) describe() string {
	return fmt.Sprintf("%s, %s", lim.mem, formatBytes(lim.memBytes))
}

// release removes the cgroup; the process must be gone.
func (lim *limits) release() {
	if lim != nil && lim.cg != nil {
		lim.cg.remove()
	}
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
