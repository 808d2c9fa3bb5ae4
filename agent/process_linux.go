package agent

import "syscall"

// sysProcAttr puts the function in its own process group, so that stopping
// it reaches its children too, and has the kernel kill it if the agent dies
// without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// usesCgroupFD reports whether the process is created in a cgroup
// (CLONE_INTO_CGROUP).
func usesCgroupFD(attr *syscall.SysProcAttr) bool { return attr.UseCgroupFD }
