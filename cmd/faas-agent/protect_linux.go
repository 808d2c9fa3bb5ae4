package main

import "syscall"

// protectMemory makes the agent non-dumpable: other processes of its user
// (its own function processes among them, unless they run as another user)
// can then neither ptrace it nor read its /proc files, environment and
// memory included, where the control token lives. Function processes are
// unaffected: execve makes them dumpable again.
func protectMemory() {
	const prSetDumpable = 4
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0)
}
