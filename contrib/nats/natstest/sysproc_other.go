//go:build unix && !linux

package natstest

import (
	"os"
	"syscall"
)

// childSysProcAttr puts a child in a process group of its own (no parent
// death signal outside Linux: Close must run).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills p's whole process group.
func killGroup(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return err
	}
	return nil
}
