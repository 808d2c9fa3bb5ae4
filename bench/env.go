package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Meta is what every result file and every section of BENCHMARKS.md states
// about the run that produced it.
type Meta struct {
	Scenario string `json:"scenario"`
	// Command is the exact command that reproduces the figures.
	Command string `json:"command"`
	CPU     string `json:"cpu"`
	Cores   int    `json:"cores"`
	MemGiB  int    `json:"mem_gib"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	// Start is the run's start (UTC); Seconds its wall-clock length.
	Start   time.Time `json:"start"`
	Seconds float64   `json:"seconds"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1-, 5- and 15-minute
	// load averages when the scenario started and ended: other work on a
	// shared machine shows there.
	LoadBefore [3]float64 `json:"load_before"`
	LoadAfter  [3]float64 `json:"load_after"`
}

func newMeta(scenario, command string) Meta {
	return Meta{
		Scenario:   scenario,
		Command:    command,
		CPU:        cpuModel(),
		Cores:      runtime.NumCPU(),
		MemGiB:     memGiB(),
		Go:         runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		Start:      time.Now().UTC(),
		LoadBefore: loadAvg(),
	}
}

func (m *Meta) finish() {
	m.Seconds = time.Since(m.Start).Seconds()
	m.LoadAfter = loadAvg()
}

// Machine is the one-line description of the machine used in the report.
func (m Meta) Machine() string {
	mem := ""
	if m.MemGiB > 0 {
		mem = fmt.Sprintf(", %d GiB", m.MemGiB)
	}
	return fmt.Sprintf("%s, %d cores%s; %s %s", m.CPU, m.Cores, mem, m.Go, m.OS)
}

// Load describes the load averages around the run.
func (m Meta) Load() string {
	return fmt.Sprintf("load average %.2f / %.2f / %.2f (1/5/15 min) before, %.2f / %.2f / %.2f after",
		m.LoadBefore[0], m.LoadBefore[1], m.LoadBefore[2], m.LoadAfter[0], m.LoadAfter[1], m.LoadAfter[2])
}

// cpuModel reads the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU (" + runtime.GOARCH + ")"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU (" + runtime.GOARCH + ")"
}

func memGiB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			return int((kb + 1<<19) >> 20)
		}
	}
	return 0
}

// loadAvg reads /proc/loadavg (zeros where there is none).
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	_, _ = fmt.Sscan(string(b), &l[0], &l[1], &l[2])
	return l
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module: run go run ./bench from the faasplane checkout")
	}
	return filepath.Dir(mod), nil
}
