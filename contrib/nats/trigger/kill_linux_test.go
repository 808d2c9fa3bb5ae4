package trigger

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/contrib/nats/natstest"
)

// worker is one mqworker process: a Dataplane over pods/local and a
// trigger, as a platform would run them.
type worker struct {
	cmd  *exec.Cmd
	dir  string
	done chan error
}

func startWorker(t *testing.T, url, dir, record string) *worker {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	log, err := os.Create(filepath.Join(dir, "worker.log"))
	require.NoError(t, err)
	defer log.Close()
	cmd := exec.Command(built.worker, "-nats", url, "-code", built.pkgPath, "-agent", built.agent,
		"-dir", filepath.Join(dir, "pods"), "-record", record, "-ack-wait", "2s")
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	w := &worker{cmd: cmd, dir: dir, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case ready <- sc.Text():
			default:
			}
		}
		w.done <- cmd.Wait()
	}()
	select {
	case line := <-ready:
		require.Equal(t, "MQWORKER_READY", line)
	case err := <-w.done:
		b, _ := os.ReadFile(filepath.Join(dir, "worker.log"))
		t.Fatalf("worker exited before it was ready: %v\n%s", err, b)
	case <-time.After(time.Minute):
		t.Fatal("worker not ready within a minute")
	}
	return w
}

// kill9 kills the worker with SIGKILL, as a crash would, and then the
// agent and function processes it leaves behind (pods/local puts each
// agent in a process group of its own, which no signal to the worker
// reaches), found by their work directory.
func (w *worker) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	<-w.done
	var orphans []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(w.dir)) {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
		orphans = append(orphans, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	require.Eventually(t, func() bool {
		for _, pid := range orphans {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil {
				if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !bytes.Contains(b, []byte(") Z ")) {
					return false
				}
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "orphans %v", orphans)
}

// stop stops the worker with SIGTERM and waits for a clean exit.
func (w *worker) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-w.done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("worker did not stop within a minute of SIGTERM")
	}
}

// At least once, nothing lost: 10,000 messages, and the process that
// runs the consumer and the dataplane (with its agents and function
// processes) is killed with SIGKILL twice mid-stream and started again.
// Every message is processed at least once, as the function counts; the
// repeats carry the message's request ID, so the function could drop
// them; they are counted and reported.
func TestAtLeastOnceAcrossProcessKills(t *testing.T) {
	binaries(t)
	srv, err := natstest.Start(natstest.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Close()
	s := newStream(t, srv.URL())
	const n = 10_000
	s.publish(t, bodies(n)...)
	dir := t.TempDir()
	record := filepath.Join(dir, "record")

	start := time.Now()
	var kills []string
	for i, at := range []int{n / 4, 3 * n / 5} {
		w := startWorker(t, srv.URL(), filepath.Join(dir, fmt.Sprint("w", i)), record)
		require.Eventually(t, func() bool { return readRecord(t, record).lines >= at }, 2*time.Minute, 2*time.Millisecond)
		w.kill9(t)
		tl := readRecord(t, record)
		kills = append(kills, fmt.Sprintf("kill %d after %d processed (%d lines)", i+1, len(tl.byID), tl.lines))
	}
	w := startWorker(t, srv.URL(), filepath.Join(dir, "w2"), record)
	require.Eventually(t, func() bool {
		if len(readRecord(t, record).byID) < n {
			return false
		}
		p, ap := s.pending(t, "orders-trigger")
		return p == 0 && ap == 0
	}, 3*time.Minute, 20*time.Millisecond)
	elapsed := time.Since(start)
	w.stop(t)

	tl := readRecord(t, record)
	assert.Empty(t, tl.missing(n), "every message processed at least once")
	assert.Len(t, tl.byID, n, "and no request ID but the messages'")
	for id, c := range tl.byID {
		if c > 1 {
			assert.True(t, strings.HasPrefix(id, "ORDERS-"), "a repeat carries its message's ID: %s", id)
		}
	}
	assert.Empty(t, s.deadLetters(t))
	t.Logf("at-least-once: %d messages, %s; all %d processed at least once, %d duplicates (%d lines, %d deliveries beyond the first), in %v",
		n, strings.Join(kills, ", "), len(tl.byID), tl.duplicates(), tl.lines, tl.repeats, elapsed.Round(time.Millisecond))
}
