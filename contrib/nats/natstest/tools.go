package natstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// ServerVersion is the nats-server that StartProcess runs. It must match
// tools/ensure-tools.sh, which builds it (TestToolVersionMatchesScript
// checks), and the module's go.mod, whose in-process server is the same
// release.
const ServerVersion = "v2.15.3"

// Environment variables of the tools.
const (
	// EnvServer names the nats-server binary; it wins over the cache.
	EnvServer = "FAAS_NATS_SERVER"
	// EnvToolsCache moves the cache from $HOME/.cache/faasplane/tools.
	EnvToolsCache = "FAAS_TOOLS_CACHE"
)

// CacheDir is where ensure-tools.sh puts the tools by default:
// $FAAS_TOOLS_CACHE, else $HOME/.cache/faasplane/tools.
func CacheDir() string {
	if d := os.Getenv(EnvToolsCache); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "." // the script, run from the same directory, agrees
	}
	return filepath.Join(home, ".cache", "faasplane", "tools")
}

// ServerPath returns the binary's path: $FAAS_NATS_SERVER, else the
// cache's, without checking that it exists.
func ServerPath() string {
	if p := os.Getenv(EnvServer); p != "" {
		return p
	}
	return filepath.Join(CacheDir(), "nats-server-"+ServerVersion, "nats-server")
}

func usable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		return fmt.Errorf("%s: not an executable file", path)
	}
	return nil
}

// ensureMu keeps the tests of one binary from building twice at once; the
// script's lock covers separate processes.
var ensureMu sync.Mutex

// EnsureServer returns ServerPath, first running tools/ensure-tools.sh
// when the binary is missing (26 s on two cores with a cold build cache).
// The script's progress goes to progress (nil: os.Stderr). A path set in
// the environment is never built over: if it is missing, that is an error.
func EnsureServer(ctx context.Context, progress io.Writer) (string, error) {
	ensureMu.Lock()
	defer ensureMu.Unlock()
	path := ServerPath()
	err := usable(path)
	if err == nil {
		return path, nil
	}
	if os.Getenv(EnvServer) != "" {
		return "", fmt.Errorf("natstest: %s names an unusable nats-server: %w", EnvServer, err)
	}
	script, ferr := findEnsureScript()
	if ferr != nil {
		return "", fmt.Errorf("natstest: nats-server missing (%v), and cannot build it: %w", err, ferr)
	}
	if progress == nil {
		progress = os.Stderr
	}
	fmt.Fprintf(progress, "natstest: nats-server missing (%v); running %s\n", err, script)
	start := time.Now()
	var tail bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), EnvToolsCache+"="+CacheDir())
	cmd.Stdout = io.Discard // the export line: the path is computed the same way here
	cmd.Stderr = io.MultiWriter(progress, &tail)
	cmd.SysProcAttr = childSysProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("natstest: %s failed after %v: %w\n%s", script, time.Since(start).Round(time.Second), err, lastBytes(tail.Bytes(), 4<<10))
	}
	if err := usable(path); err != nil {
		return "", fmt.Errorf("natstest: %s succeeded but the binary is missing: %w", script, err)
	}
	return path, nil
}

// findEnsureScript finds tools/ensure-tools.sh beside this package's source
// (the usual case: tests run from a checkout), else above the working
// directory.
func findEnsureScript() (string, error) {
	const rel = "tools/ensure-tools.sh"
	var tried []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		p := filepath.Join(filepath.Dir(file), "..", rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			for _, p := range []string{filepath.Join(dir, rel), filepath.Join(dir, "contrib/nats", rel)} {
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
				tried = append(tried, p)
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	first := "none"
	if len(tried) > 0 {
		first = tried[0]
	}
	return "", fmt.Errorf("ensure-tools.sh not found (tried %d places, first %s); set %s", len(tried), first, EnvServer)
}

// lastBytes returns the end of b, cut at a line start.
func lastBytes(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return b
}

// fileTail returns the end of a log file for an error message.
func fileTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(fi.Size()-8<<10, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return string(lastBytes(b, 4<<10))
}
