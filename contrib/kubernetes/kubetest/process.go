package kubetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// child is one program the control plane runs: kube-apiserver or kwok.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been waited for
	err     error         // Wait's result, set before done closes
}

// startChild starts bin with args, its stdout and stderr appended to
// dir/name.log. The log is a file rather than a pipe so that no goroutine
// copies it and it survives the process for a post-mortem.
func startChild(dir, name, bin string, args []string) (*child, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// Not exec.CommandContext: the child lives until Close, not until the
	// context Start was given ends.
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childSysProcAttr()
	fmt.Fprintf(logFile, "=== %s %s %q\n", time.Now().Format(time.RFC3339Nano), bin, args)
	err = cmd.Start()
	// The child has its own descriptor now; ours is not needed.
	logFile.Close()
	if err != nil {
		return nil, fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has ended, and how.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// stop kills the process group and waits for the process. A control plane
// under test holds no state worth a graceful shutdown, and SIGKILL makes
// Close take milliseconds instead of kube-apiserver's shutdown delays.
func (c *child) stop() error {
	if ok, _ := c.exited(); ok {
		// Also reap anything it left in its group.
		_ = killGroup(c.cmd.Process)
		return nil
	}
	if err := killGroup(c.cmd.Process); err != nil {
		return fmt.Errorf("kubetest: kill %s: %w", c.name, err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(30 * time.Second):
		// SIGKILL does not take this long unless the process is stuck in the
		// kernel; say so rather than hang the test binary.
		return fmt.Errorf("kubetest: %s (pid %d) did not exit within 30s of SIGKILL", c.name, c.cmd.Process.Pid)
	}
}

// pid returns the process id, which is also its process group id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// failure wraps err with the process's exit status and its log's tail.
func (c *child) failure(err error) error {
	status := "running"
	if ok, werr := c.exited(); ok {
		status = fmt.Sprintf("exited: %v", werr)
	}
	return fmt.Errorf("%w\n--- %s (%s), end of %s:\n%s", err, c.name, status, c.logPath, fileTail(c.logPath))
}
