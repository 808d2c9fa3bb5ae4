//go:build unix && !linux

package agent

import "syscall"

// sysProcAttr puts the function in its own process group, so that stopping
// it reaches its children too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func usesCgroupFD(*syscall.SysProcAttr) bool { return false }
