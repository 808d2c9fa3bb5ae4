package kubetest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// requireGroupsGone checks that no process is left in the given process
// groups (a child and anything it started).
func requireGroupsGone(t *testing.T, pgids ...int) {
	t.Helper()
	for _, pgid := range pgids {
		if err := syscall.Kill(-pgid, 0); err != syscall.ESRCH {
			t.Errorf("process group %d still has processes (kill 0: %v)", pgid, err)
		}
	}
}

// requireNoChildren checks that the test process has no child processes
// left, running or unreaped.
func requireNoChildren(t *testing.T) {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // ended while we looked
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 && f[1] == self {
			t.Errorf("child process left: %s", strings.TrimSpace(s[:i+1]))
		}
	}
}

// rss returns a process's resident memory as /proc reports it.
func rss(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
