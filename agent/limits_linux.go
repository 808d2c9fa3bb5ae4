package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/faasplane/faas/lifecycle"
)

// cgroupParent is the cgroup under which the agent creates the cgroups of
// its function processes: its own, found through /proc/self/mountinfo and
// /proc/self/cgroup, or the one Config.CgroupParent names.
type cgroupParent struct {
	v2     bool
	dir    string // v2: the cgroup; v1: in the memory hierarchy
	cpuDir string // v1: in the cpu hierarchy ("" when absent); v2: unused
	cpu    bool   // v2: the cpu controller is enabled for children
}

func (p *cgroupParent) mechanism() string {
	if p.v2 {
		return lifecycle.MemoryLimitCgroup2
	}
	return lifecycle.MemoryLimitCgroup1
}

// mount is a cgroup file system from mountinfo.
type mount struct {
	root, point string
	v2          bool
	opts        []string // super options (v1 controllers)
}

func readMounts() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []mount
	for line := range strings.SplitSeq(string(b), "\n") {
		// id parent maj:min root point opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			out = append(out, mount{root: f[3], point: f[4], v2: true})
		case "cgroup":
			out = append(out, mount{root: f[3], point: f[4], opts: strings.Split(g[2], ",")})
		}
	}
	return out, nil
}

// ownCgroups reads /proc/self/cgroup: controller → path ("" is cgroup v2).
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

// under returns the directory of cgroup path in m.
func (m mount) under(path string) string {
	if m.root != "/" {
		path = strings.TrimPrefix(path, m.root)
	}
	return filepath.Join(m.point, path)
}

func hasController(file, c string) bool {
	b, err := os.ReadFile(file)
	return err == nil && contains(strings.Fields(string(b)), c)
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// findCgroup finds the cgroup to create children in: dir when set (a cgroup
// v2 directory, or, with v1, one of a v1 memory hierarchy), else the
// agent's own, preferring cgroup v2. It checks that a child can be created
// there, and removes what dead agents left there.
func findCgroup(dir string, v1 bool) (*cgroupParent, error) {
	mounts, err := readMounts()
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	own, err := ownCgroups()
	if err != nil {
		return nil, fmt.Errorf("reading the agent's cgroups: %w", err)
	}
	var reasons []string
	try := func(p *cgroupParent) (*cgroupParent, bool) {
		if err := p.probe(); err != nil {
			reasons = append(reasons, err.Error())
			return nil, false
		}
		p.sweep()
		return p, true
	}
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err == nil {
			p, ok := try(&cgroupParent{v2: true, dir: dir})
			if ok {
				return p, nil
			}
		} else if !v1 {
			reasons = append(reasons, "not a cgroup v2 directory (cgroup v1 needs MemoryEnforcement cgroup)")
		} else if p, ok := try(&cgroupParent{dir: dir}); ok {
			return p, nil
		}
		return nil, fmt.Errorf("cgroup %s: %s", dir, strings.Join(reasons, "; "))
	}
	for _, m := range mounts {
		if path, ok := own[""]; ok && m.v2 {
			if p, ok := try(&cgroupParent{v2: true, dir: m.under(path)}); ok {
				return p, nil
			}
		}
	}
	if !v1 {
		if len(reasons) == 0 {
			reasons = append(reasons, "no cgroup v2 with the memory controller")
		}
		return nil, errors.New(strings.Join(reasons, "; ") + " (the v1 memory hierarchy is used with MemoryEnforcement cgroup only)")
	}
	var memDir, cpuDir string
	for _, m := range mounts {
		if m.v2 {
			continue
		}
		if path, ok := own["memory"]; ok && contains(m.opts, "memory") {
			memDir = m.under(path)
		}
		if path, ok := own["cpu"]; ok && contains(m.opts, "cpu") {
			cpuDir = m.under(path)
		}
	}
	if memDir != "" {
		if p, ok := try(&cgroupParent{dir: memDir, cpuDir: cpuDir}); ok {
			return p, nil
		}
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no cgroup v2 with the memory controller and no v1 memory hierarchy")
	}
	return nil, errors.New(strings.Join(reasons, "; "))
}

// probe checks that children with a memory limit can be created in p,
// enabling the v2 controllers for children when needed.
func (p *cgroupParent) probe() error {
	if p.v2 {
		if !hasController(filepath.Join(p.dir, "cgroup.controllers"), "memory") {
			return fmt.Errorf("cgroup v2 %s: the memory controller is not available", p.dir)
		}
		sub := filepath.Join(p.dir, "cgroup.subtree_control")
		if !hasController(sub, "memory") {
			// Fails (EBUSY) when the cgroup holds processes itself: cgroup
			// v2 lets only leaves hold them.
			if err := os.WriteFile(sub, []byte("+memory"), 0); err != nil {
				return fmt.Errorf("cgroup v2 %s: enabling the memory controller for children: %w", p.dir, err)
			}
		}
		if hasController(filepath.Join(p.dir, "cgroup.controllers"), "cpu") && !hasController(sub, "cpu") {
			_ = os.WriteFile(sub, []byte("+cpu"), 0)
		}
		p.cpu = hasController(sub, "cpu")
	}
	probe := filepath.Join(p.dir, fmt.Sprintf("faas-%d-probe", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s %s: creating a child: %w", p.mechanism(), p.dir, err)
	}
	defer func() { _ = os.Remove(probe) }()
	limitFile := "memory.limit_in_bytes"
	if p.v2 {
		limitFile = "memory.max"
	}
	if _, err := os.Stat(filepath.Join(probe, limitFile)); err != nil {
		return fmt.Errorf("%s %s: a child has no %s", p.mechanism(), p.dir, limitFile)
	}
	if p.cpuDir != "" {
		cprobe := filepath.Join(p.cpuDir, filepath.Base(probe))
		if err := os.Mkdir(cprobe, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			p.cpuDir = "" // no CPU quota, the memory limit still works
		} else {
			_ = os.Remove(cprobe)
		}
	}
	return nil
}

// sweep removes the empty cgroups that agents which are gone left behind
// (an agent killed with SIGKILL cannot remove its own): children named
// faas-<pid>-... whose agent process no longer exists. A cgroup that
// still holds a process cannot be removed, and stays.
func (p *cgroupParent) sweep() {
	for _, dir := range []string{p.dir, p.cpuDir} {
		if dir == "" {
			continue
		}
		des, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range des {
			rest, ok := strings.CutPrefix(de.Name(), "faas-")
			if !ok || !de.IsDir() {
				continue
			}
			pidText, _, _ := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidText)
			if err != nil || pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
				continue
			}
			_ = syscall.Rmdir(filepath.Join(dir, de.Name()))
		}
	}
}

// cgroupChild is the cgroup of one function process.
type cgroupChild struct {
	v2     bool
	dir    string // v2: the cgroup; v1: in the memory hierarchy ("" when only CPU)
	cpuDir string // v1: in the cpu hierarchy ("" when none)
	fd     int    // v2: an open descriptor of dir, for CLONE_INTO_CGROUP; -1 when closed
	cpuCtl bool   // v2: the cpu controller is enabled
	cpuOK  bool   // a CPU quota is set
}

func (c *cgroupChild) mechanism() string {
	if c.v2 {
		return lifecycle.MemoryLimitCgroup2
	}
	return lifecycle.MemoryLimitCgroup1
}

func (c *cgroupChild) cpuLimited() bool { return c.cpuOK }

// cpuPeriod is the CFS period of CPU quotas, 100 ms (the kernel's default).
const cpuPeriod = 100_000

// create creates the cgroup name with the limits (zero: none yet); with
// cpu, also its directory in a v1 cpu hierarchy, so that a CPU limit can
// be set later without moving the process.
func (p *cgroupParent) create(name string, memBytes, milliCPU int64, cpu bool) (_ *cgroupChild, err error) {
	c := &cgroupChild{v2: p.v2, fd: -1, cpuCtl: p.cpu}
	defer func() {
		if err != nil {
			c.remove()
		}
	}()
	dir := filepath.Join(p.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup: %w", err)
	}
	c.dir = dir
	if !p.v2 && (milliCPU > 0 || cpu) && p.cpuDir != "" {
		cdir := filepath.Join(p.cpuDir, name)
		if err := os.Mkdir(cdir, 0o755); err == nil {
			c.cpuDir = cdir
		}
	}
	if p.v2 {
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("opening cgroup: %w", err)
		}
		c.fd = fd
	}
	if err := c.setLimits(memBytes, milliCPU); err != nil {
		return nil, err
	}
	return c, nil
}

// setLimits writes the limits (zero: leave unset) into the cgroup.
func (c *cgroupChild) setLimits(memBytes, milliCPU int64) error {
	write := func(dir, file, value string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		return nil
	}
	quota := strconv.FormatInt(milliCPU*cpuPeriod/1000, 10)
	if c.v2 {
		if memBytes > 0 {
			if err := write(c.dir, "memory.max", strconv.FormatInt(memBytes, 10)); err != nil {
				return err
			}
			_ = write(c.dir, "memory.swap.max", "0")  // absent without swap accounting
			_ = write(c.dir, "memory.oom.group", "1") // an OOM kill takes the whole group
		}
		if milliCPU > 0 && c.cpuCtl {
			c.cpuOK = write(c.dir, "cpu.max", quota+" "+strconv.Itoa(cpuPeriod)) == nil
		}
		return nil
	}
	if memBytes > 0 {
		if err := write(c.dir, "memory.limit_in_bytes", strconv.FormatInt(memBytes, 10)); err != nil {
			return err
		}
		// With swap accounting, swap counts too (written after the memory
		// limit, which it may not undercut).
		_ = write(c.dir, "memory.memsw.limit_in_bytes", strconv.FormatInt(memBytes, 10))
	}
	if milliCPU > 0 && c.cpuDir != "" {
		c.cpuOK = write(c.cpuDir, "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)) == nil &&
			write(c.cpuDir, "cpu.cfs_quota_us", quota) == nil
	}
	return nil
}

func (c *cgroupChild) procAttr(attr *syscall.SysProcAttr) {
	if c.v2 && c.fd >= 0 {
		attr.UseCgroupFD, attr.CgroupFD = true, c.fd
	}
}

// enter moves pid (all its threads) into the cgroup.
func (c *cgroupChild) enter(pid int) error {
	s := strconv.Itoa(pid)
	for _, d := range []string{c.dir, c.cpuDir} {
		if d == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(s), 0); err != nil {
			return fmt.Errorf("moving process %d into cgroup %s: %w", pid, d, err)
		}
	}
	return nil
}

// oomKilled reports whether the kernel's OOM killer killed a process of the
// cgroup for its memory limit.
func (c *cgroupChild) oomKilled() bool {
	file, key := "memory.oom_control", "oom_kill"
	if c.v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n > 0
		}
	}
	return false
}

// remove closes the descriptor and removes the cgroup. The processes are
// gone, but the kernel may take a moment to notice that the cgroup is
// empty, so removal is retried for up to a second.
func (c *cgroupChild) remove() {
	if c.fd >= 0 {
		_ = syscall.Close(c.fd)
		c.fd = -1
	}
	for _, d := range []string{c.dir, c.cpuDir} {
		if d == "" {
			continue
		}
		for i := 0; i < 100; i++ {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) || !errors.Is(err, syscall.EBUSY) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// limitData sets pid's RLIMIT_DATA to its data size now plus n bytes.
func limitData(pid int, n int64) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return fmt.Errorf("reading the process's size: %w", err)
	}
	var dataKB int64
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmData:"); ok {
			dataKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	limit := uint64(dataKB*1024 + n)
	lim := syscall.Rlimit{Cur: limit, Max: limit}
	_, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_DATA), uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("prlimit RLIMIT_DATA of process %d: %w", pid, e)
	}
	return nil
}
