package agent

import "syscall"

// sysProcAttr puts the function in its own process group, so that stopping
// it reaches its children too, and has the kernel kill it if the agent dies
// without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
