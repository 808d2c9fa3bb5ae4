package kubetest

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
	"strings"
	"sync"
	"time"
)

// The versions of the binaries the control plane runs. They must match
// tools/ensure-tools.sh, which builds them (TestToolVersionsMatchScript
// checks), and the tools module tools/kube-apiserver/go.mod.
const (
	KubeVersion = "v1.37.2"
	KwokVersion = "v0.8.0"
)

// Environment variables naming the binaries and the kwok stage file. Each
// one that is set wins over the cache; ensure-tools.sh prints them as
// export lines.
const (
	EnvKubeAPIServer = "FAAS_KUBE_APISERVER"
	EnvKwok          = "FAAS_KWOK"
	EnvKwokStages    = "FAAS_KWOK_STAGES"
	// EnvToolsCache moves the cache from $HOME/.cache/faasplane/tools.
	EnvToolsCache = "FAAS_TOOLS_CACHE"
)

// Tools locates the external programs a control plane runs.
type Tools struct {
	KubeAPIServer string // kube-apiserver binary
	Kwok          string // kwok binary
	KwokStages    string // kwok stage configuration (YAML stream)
}

// CacheDir is where ensure-tools.sh puts the tools by default:
// $FAAS_TOOLS_CACHE, else $HOME/.cache/faasplane/tools.
func CacheDir() string {
	if d := os.Getenv(EnvToolsCache); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		// No home: a relative path still names the same place for the
		// script, which is run from the same working directory.
		home = "."
	}
	return filepath.Join(home, ".cache", "faasplane", "tools")
}

// DefaultTools returns the environment's paths, else the cache's, without
// checking that they exist. Each tool's environment variable overrides its
// cache path on its own.
func DefaultTools() Tools {
	cache := CacheDir()
	pick := func(env, def string) string {
		if v := os.Getenv(env); v != "" {
			return v
		}
		return def
	}
	kwokDir := filepath.Join(cache, "kwok-"+KwokVersion)
	return Tools{
		KubeAPIServer: pick(EnvKubeAPIServer, filepath.Join(cache, "kube-apiserver-"+KubeVersion, "kube-apiserver")),
		Kwok:          pick(EnvKwok, filepath.Join(kwokDir, "kwok")),
		KwokStages:    pick(EnvKwokStages, filepath.Join(kwokDir, "stages.yaml")),
	}
}

// missing lists the tools that are not there, as "name (why)". A
// tool whose path came from the environment is reported in fromEnv too.
func (t Tools) missing() (missing, fromEnv []string) {
	check := func(name, env, path string, exe bool) {
		why := ""
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			why = err.Error()
		case fi.IsDir(), exe && fi.Mode()&0o111 == 0, !exe && fi.Size() == 0:
			why = path + ": not a usable file"
		default:
			return
		}
		m := fmt.Sprintf("%s (%s)", name, why)
		missing = append(missing, m)
		if os.Getenv(env) != "" {
			fromEnv = append(fromEnv, env+": "+m)
		}
	}
	check("kube-apiserver", EnvKubeAPIServer, t.KubeAPIServer, true)
	check("kwok", EnvKwok, t.Kwok, true)
	check("kwok stages", EnvKwokStages, t.KwokStages, false)
	return missing, fromEnv
}

// ensureMu keeps the tests of one binary from building the tools twice at
// once; the script's own lock covers separate processes.
var ensureMu sync.Mutex

// EnsureTools returns DefaultTools, building whatever is missing first by
// running tools/ensure-tools.sh (a cold build takes about 7 minutes on two
// cores: kube-apiserver ~5, kwok ~2). The script's progress goes to progress
// (nil: os.Stderr). A path set in the environment is never built over: if
// it is missing, that is an error.
func EnsureTools(ctx context.Context, progress io.Writer) (Tools, error) {
	ensureMu.Lock()
	defer ensureMu.Unlock()

	t := DefaultTools()
	missing, fromEnv := t.missing()
	if len(missing) == 0 {
		return t, nil
	}
	if len(fromEnv) > 0 {
		// The script builds into the cache only: it cannot repair a path
		// that someone chose.
		return t, fmt.Errorf("kubetest: tools named by the environment are not usable: %s", strings.Join(fromEnv, "; "))
	}
	script, err := findEnsureScript()
	if err != nil {
		return t, fmt.Errorf("kubetest: missing %v, and cannot build them: %w", missing, err)
	}
	if progress == nil {
		progress = os.Stderr
	}
	fmt.Fprintf(progress, "kubetest: missing %v; running %s\n", missing, script)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), EnvToolsCache+"="+CacheDir())
	// stdout carries the export lines, which we do not need: the paths are
	// computed the same way here.
	var tail tailBuffer
	cmd.Stdout = io.Discard
	cmd.Stderr = io.MultiWriter(progress, &tail)
	// go build runs compilers as children: on cancellation the whole group
	// must go, not just bash.
	cmd.SysProcAttr = childSysProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return t, fmt.Errorf("kubetest: %s failed after %v: %w\n%s", script, time.Since(start).Round(time.Second), err, tail.String())
	}
	if missing, _ := t.missing(); len(missing) > 0 {
		return t, fmt.Errorf("kubetest: %s succeeded but %v are still missing", script, missing)
	}
	return t, nil
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
			for _, p := range []string{filepath.Join(dir, rel), filepath.Join(dir, "contrib/kubernetes", rel)} {
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
	return "", fmt.Errorf("ensure-tools.sh not found (tried %d places, first %v); set %s, %s and %s",
		len(tried), firstOf(tried), EnvKubeAPIServer, EnvKwok, EnvKwokStages)
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return s[0]
}

// tailBuffer keeps the last tailBytes written to it: enough of a failed
// build's output for an error message.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 4 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*tailBytes {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-tailBytes:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(trimTail(b.buf))
}

// trimTail keeps the last tailBytes of b, cut at a line start.
func trimTail(b []byte) []byte {
	if len(b) <= tailBytes {
		return b
	}
	b = b[len(b)-tailBytes:]
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
	off := fi.Size() - 2*tailBytes
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return string(trimTail(b))
}
