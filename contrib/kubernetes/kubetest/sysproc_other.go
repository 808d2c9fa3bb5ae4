//go:build !linux

package kubetest

import (
	"os"
	"syscall"
)

// childSysProcAttr: process groups and the parent-death signal are Linux
// facilities here; elsewhere a child is killed alone.
func childSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

func killGroup(p *os.Process) error {
	if err := p.Kill(); err != nil && err != os.ErrProcessDone {
		return err
	}
	return nil
}
