//go:build !linux

package main

// protectMemory does nothing where the process cannot be made non-dumpable.
func protectMemory() {}
