//go:build unix && !linux

package agent

import (
	"errors"
	"syscall"
)

// Cgroups and prlimit are Linux's: elsewhere memory limits are advisory.

type cgroupParent struct{}

func (*cgroupParent) create(string, int64, int64, bool) (*cgroupChild, error) {
	return nil, errors.New("cgroups need Linux")
}

type cgroupChild struct{}

func (*cgroupChild) mechanism() string               { return "none" }
func (*cgroupChild) cpuLimited() bool                { return false }
func (*cgroupChild) procAttr(*syscall.SysProcAttr)   {}
func (*cgroupChild) enter(int) error                 { return nil }
func (*cgroupChild) oomKilled() bool                 { return false }
func (*cgroupChild) remove()                         {}
func (*cgroupChild) setLimits(int64, int64) error    { return nil }
func findCgroup(string, bool) (*cgroupParent, error) { return nil, errors.New("cgroups need Linux") }
func limitData(int, int64) error                     { return errors.New("prlimit needs Linux") }
