package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

// cgroupOf returns the cgroup path of pid for controller ("" : v2).
func cgroupOf(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (controller == "" && parts[1] == "" || controller != "" && contains(strings.Split(parts[1], ","), controller)) {
			return parts[2]
		}
	}
	return ""
}

// requireCgroups checks that this host lets the agent create cgroups: as
// root on Linux it must (the tests run as root in CI), and without root
// the agent must say why not and refuse a load that needs one.
func requireCgroups(t *testing.T) bool {
	t.Helper()
	l := newLimiter(MemoryCgroup, "")
	if os.Geteuid() == 0 {
		require.NotNil(t, l.cg, "as root the agent must be able to create cgroups here: %v", l.cgErr)
		return true
	}
	if l.cg != nil {
		return true
	}
	h := newHarness(t, func(c *Config) { c.MemoryEnforcement = MemoryCgroup })
	_, err := h.load("hello", h.publish("hello.tar.gz", binPackage(t, "hello", helloManifest)), func(r *lifecycle.LoadRequest) { r.Limits.MemoryBytes = 64 << 20 })
	require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
	require.ErrorContains(t, err, "no usable cgroup")
	return false
}

// TestMemoryLimitCgroup: a function beyond its memory limit is killed by
// the kernel in its own cgroup, and the agent reports it as such: the
// request in flight, the watch's exit, the stats and the log say "memory
// limit exceeded", not a crash. Both placements: a hot-loaded bootstrap
// moved into the cgroup at the load, and a process started in it.
func TestMemoryLimitCgroup(t *testing.T) {
	if !requireCgroups(t) {
		return
	}
	for _, exec := range []bool{false, true} {
		t.Run(fmt.Sprintf("exec=%v", exec), func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, func(c *Config) { withRuntime(t, "python", exec)(c); c.MemoryEnforcement = MemoryCgroup })
			lr, err := h.loadFixture("python", "hog", func(r *lifecycle.LoadRequest) { r.Limits.MemoryBytes = 96 << 20 })
			require.NoError(t, err)
			require.Contains(t, []string{lifecycle.MemoryLimitCgroup1, lifecycle.MemoryLimitCgroup2}, lr.MemoryLimit)
			require.Contains(t, cgroupOf(t, lr.PID, map[bool]string{true: "", false: "memory"}[lr.MemoryLimit == lifecycle.MemoryLimitCgroup2]),
				fmt.Sprintf("/faas-%d-", os.Getpid()), "the function runs in its own cgroup")
			require.NoError(t, h.initialize("hog"))
			require.Equal(t, "allocated\n", h.mustInvoke("hog", "/alloc?mb=16").body, "within the limit")

			r := h.mustInvoke("hog", "/alloc?mb=400")
			requireError(t, r, lifecycle.CodeInstanceFailure)
			w, err := h.client.Watch(ctx, h.ctl, lifecycle.AgentReady, 10*time.Second)
			require.NoError(t, err)
			require.Equal(t, lifecycle.AgentExited, w.State)
			require.True(t, strings.HasPrefix(w.Exit, "memory limit exceeded ("+lr.MemoryLimit+", 96 MiB)"), w.Exit)
			st, err := h.client.Stats(ctx, h.ctl)
			require.NoError(t, err)
			require.Equal(t, int64(1), st.MemoryLimitKills)
			require.Equal(t, int64(96<<20), st.MemoryLimitBytes)
			require.Equal(t, lr.MemoryLimit, st.MemoryLimit)
			require.NotEmpty(t, h.logs.find("function process exceeded its memory limit", "function_id=hog"))
			_, err = h.client.Ping(ctx, h.ctl)
			require.ErrorContains(t, err, "memory limit exceeded")
		})
	}
}

// TestCPULimitCgroup: MilliCPU becomes the cgroup's CPU quota.
func TestCPULimitCgroup(t *testing.T) {
	if !requireCgroups(t) {
		return
	}
	h := newHarness(t, func(c *Config) { c.MemoryEnforcement = MemoryCgroup })
	lr := h.loadReady("hello", "hello", helloManifest, func(r *lifecycle.LoadRequest) { r.Limits.MilliCPU = 250 })
	require.Contains(t, []string{lifecycle.MemoryLimitCgroup1, lifecycle.MemoryLimitCgroup2}, lr.CPULimit)
	l := h.agent.limiter.cg
	if l.v2 {
		b, err := os.ReadFile(filepath.Join(l.dir, filepath.Base(cgroupOf(t, lr.PID, "")), "cpu.max"))
		require.NoError(t, err)
		require.Equal(t, "25000 100000", strings.TrimSpace(string(b)))
	} else {
		b, err := os.ReadFile(filepath.Join(l.cpuDir, filepath.Base(cgroupOf(t, lr.PID, "cpu")), "cpu.cfs_quota_us"))
		require.NoError(t, err)
		require.Equal(t, "25000", strings.TrimSpace(string(b)))
	}
	st, err := h.client.Stats(context.Background(), h.ctl)
	require.NoError(t, err)
	require.Equal(t, int64(250), st.MilliCPU)
	require.Equal(t, lr.CPULimit, st.CPULimit)
	require.Equal(t, lifecycle.MemoryLimitNone, st.MemoryLimit, "no memory limit asked")
}

// TestMemoryLimitRlimit: with a process limit, allocations beyond it
// fail: Python's MemoryError becomes the invocation's error and the
// process serves on; V8 aborts, and the agent reports the exit as over the
// limit because the process said it ran out of memory.
func TestMemoryLimitRlimit(t *testing.T) {
	ctx := context.Background()
	t.Run("python", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { withRuntime(t, "python", false)(c); c.MemoryEnforcement = MemoryRlimit })
		lr, err := h.loadFixture("python", "hog", func(r *lifecycle.LoadRequest) { r.Limits.MemoryBytes = 64 << 20 })
		require.NoError(t, err)
		require.Equal(t, lifecycle.MemoryLimitRlimit, lr.MemoryLimit)
		limits, err := os.ReadFile("/proc/" + strconv.Itoa(lr.PID) + "/limits")
		require.NoError(t, err)
		require.Regexp(t, `Max data size\s+\d+\s+\d+\s+bytes`, string(limits))
		require.NoError(t, h.initialize("hog"))
		r := h.mustInvoke("hog", "/alloc?mb=256")
		require.Equal(t, 500, r.status)
		require.Contains(t, r.header.Get(lifecycle.HeaderErrorMessage), "MemoryError")
		require.Equal(t, "allocated\n", h.mustInvoke("hog", "/alloc?mb=8").body, "the process serves on")
	})
	t.Run("node", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { withRuntime(t, "node", false)(c); c.MemoryEnforcement = MemoryRlimit })
		_, err := h.loadFixture("node", "hog", func(r *lifecycle.LoadRequest) { r.Limits.MemoryBytes = 128 << 20 })
		require.NoError(t, err)
		require.NoError(t, h.initialize("hog"))
		requireError(t, h.mustInvoke("hog", "/grow"), lifecycle.CodeInstanceFailure)
		w, err := h.client.Watch(ctx, h.ctl, lifecycle.AgentReady, 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, lifecycle.AgentExited, w.State)
		require.True(t, strings.HasPrefix(w.Exit, "memory limit exceeded (rlimit, 128 MiB)"), w.Exit)
		require.Equal(t, int64(1), h.agent.Stats().MemoryLimitKills)
	})
}

// TestMemoryLimitChoices: auto uses cgroup v2 or a process limit, never
// v1 (whose moves cost milliseconds per cold start); none only passes the
// limit on; cgroup without a usable cgroup fails the load, naming why.
func TestMemoryLimitChoices(t *testing.T) {
	if l := newLimiter(MemoryAuto, ""); l.cg != nil {
		require.True(t, l.cg.v2, "auto uses cgroup v2 only")
	} else {
		a := newHarness(t, nil)
		lr := a.loadReady("hello", "hello", helloManifest, func(r *lifecycle.LoadRequest) { r.Limits.MemoryBytes = 256 << 20 })
		require.Equal(t, lifecycle.MemoryLimitRlimit, lr.MemoryLimit, "no cgroup v2 here (%v): a process limit", l.cgErr)
		require.Equal(t, 200, a.mustInvoke("hello", "/").status)
	}

	h := newHarness(t, func(c *Config) { c.MemoryEnforcement = MemoryNone })
	lr := h.loadReady("hello", "hello", helloManifest, func(r *lifecycle.LoadRequest) { r.Limits.MemoryBytes = 64 << 20 })
	require.Equal(t, lifecycle.MemoryLimitNone, lr.MemoryLimit)

	notACgroup := t.TempDir()
	x := newHarness(t, func(c *Config) { c.MemoryEnforcement, c.CgroupParent = MemoryCgroup, notACgroup })
	_, err := x.load("hello", x.publish("hello.tar.gz", binPackage(t, "hello", helloManifest)), func(r *lifecycle.LoadRequest) {
		r.Limits.MemoryBytes = 64 << 20
	})
	require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
	require.ErrorContains(t, err, "no usable cgroup")
	x.requireNothingLeft()

	// Without a limit, nothing is enforced whatever the mode.
	y := newHarness(t, func(c *Config) { c.MemoryEnforcement = MemoryCgroup })
	lr = y.loadReady("hello", "hello", helloManifest, nil)
	require.Equal(t, lifecycle.MemoryLimitNone, lr.MemoryLimit)
}

func TestFormatBytes(t *testing.T) {
	require.Equal(t, "64 MiB", formatBytes(64<<20))
	require.Equal(t, "2 GiB", formatBytes(2<<30))
	require.Equal(t, "1000 bytes", formatBytes(1000))
}

// TestSweepRemovesWhatDeadAgentsLeft: an agent killed with SIGKILL leaves
// its empty cgroups; the next agent under the same parent removes them,
// and only them.
func TestSweepRemovesWhatDeadAgentsLeft(t *testing.T) {
	if !requireCgroups(t) {
		return
	}
	parent := newLimiter(MemoryCgroup, "").cg
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	alive := exec.Command("sleep", "600")
	require.NoError(t, alive.Start())
	t.Cleanup(func() { _ = alive.Process.Kill(); _ = alive.Wait() })
	gone := filepath.Join(parent.dir, fmt.Sprintf("faas-%d-1", dead.Process.Pid))
	kept := filepath.Join(parent.dir, fmt.Sprintf("faas-%d-1", alive.Process.Pid))
	require.NoError(t, os.Mkdir(gone, 0o755))
	require.NoError(t, os.Mkdir(kept, 0o755))
	t.Cleanup(func() { _ = syscall.Rmdir(kept); _ = syscall.Rmdir(gone) })
	parent.sweep()
	require.NoDirExists(t, gone)
	require.DirExists(t, kept)
}
