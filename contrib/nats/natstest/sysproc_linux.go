//go:build linux

package natstest

import (
	"os"
	"syscall"
)

// childSysProcAttr puts a child in a process group of its own, so that one
// kill reaches everything it started, and has the kernel kill it if the
// test binary dies without calling Close (a go test timeout, a panic).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills p's whole process group.
func killGroup(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return err
	}
	return nil
}
