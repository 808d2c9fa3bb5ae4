package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
)

// Defaults of [Config].
const (
	DefaultStartTimeout   = 10 * time.Second
	DefaultInitTimeout    = 30 * time.Second
	DefaultStopGrace      = 2 * time.Second
	DefaultMaxConcurrency = 1000
	DefaultTreeCacheSize  = 64
	DefaultProbeTimeout   = 2 * time.Second
	DefaultLogLineBytes   = 16 << 10
	DefaultLogRate        = 1000
	DefaultLogBurst       = 2000
)

// Config configures an [Agent].
type Config struct {
	// Store fetches code packages. Required. The agent verifies every
	// package's size and digest itself, so any store will do: the origin
	// ([code.NewOrigin]) or the node's disk cache in front of it.
	Store code.Store
	// WorkDir holds the unpacked code of the loaded function and spooled
	// packages. Required; created if missing. The agent removes what it
	// created there when it closes.
	WorkDir string
	// Runtime is the runtime this agent provides (e.g. "go"); a load
	// request for another runtime is refused. Required.
	Runtime string
	// ControlToken is the pod's control token: every request to the
	// control listener must present it (wire.SetControlToken), or
	// it is refused with 401 unauthorized. The pod provider creates it
	// with the pod (lifecycle.NewControlToken) and hands it to the agent
	// out of band. Required; see lifecycle.ValidControlToken.
	ControlToken string
	// RunAs, when set, runs function processes under this user and group
	// instead of the agent's own. It needs an agent running as root. With
	// it, a function can neither write its own code nor signal or inspect
	// the agent, and packages cached in TreeDir are shared by hard links;
	// without it they are copied into each instance, so that a function
	// cannot change the code that a later instance gets.
	RunAs *RunAs
	// Node names the node the agent runs on; ping reports it.
	Node string
	// TreeDir, when set, is a directory of unpacked packages keyed by
	// digest, shared by the agents of a node. A load whose package is
	// there skips fetching and unpacking: the cached tree is copied into
	// the work directory (on file systems with reflinks the copy shares
	// blocks), or hard-linked when RunAs makes the function another user
	// than the owner of the read-only cached files. Default: no tree
	// cache.
	TreeDir string
	// TreeCacheSize bounds the trees kept in TreeDir; the least recently
	// used are removed beyond it. Default 64.
	TreeCacheSize int
	// Limits bound the unpacking of a package; zero fields take the
	// defaults of [code.Limits] (10,000 entries, 512 MiB, ratio 100:1, 64
	// path elements deep).
	Limits code.Limits
	// StartTimeout bounds how long a load waits for the function process
	// to listen, unless the request sets its own. Default 10 s.
	StartTimeout time.Duration
	// InitTimeout bounds one call of the init hook, unless the request
	// sets its own. Default 30 s.
	InitTimeout time.Duration
	// StopGrace is how long a stopping function gets between SIGTERM and
	// SIGKILL of its process group, and how long Close waits for
	// in-flight requests. Default 2 s.
	StopGrace time.Duration
	// MaxConcurrency is the largest per-instance concurrency limit a load
	// request may ask for. Default 1000.
	MaxConcurrency int
	// BaseEnv is the environment every function process starts with,
	// before the manifest's and the request's variables and PORT. Nil
	// means PATH, HOME, TMPDIR, LANG and TZ of the agent's own
	// environment; an empty non-nil slice means nothing.
	BaseEnv []string
	// Logger receives the agent's logs, and the function's output unless
	// LogSink is set. Nil discards them.
	Logger *slog.Logger

	// Bootstrap, when set, is the runtime's bootstrap (RUNTIMES.md): the
	// agent starts it at once, before any function is known, and a load
	// tells it to load the function (a hot load) instead of starting a
	// process; the manifest's command then names the function's entry in
	// the runtime's own terms ("app.py:handler"). With Bootstrap.Exec it
	// is started per load instead. Nil: every load starts the manifest's
	// command (Go binaries, custom commands).
	Bootstrap *Bootstrap
	// Instance names the pod the agent serves (its pod ID); it tags the
	// function's log records and the agent's statistics. Optional.
	Instance string
	// MemoryEnforcement is how a load's memory limit is enforced
	// (default [MemoryAuto]: a cgroup when possible, else a process
	// limit). CPU limits are enforced with a cgroup only.
	MemoryEnforcement MemoryEnforcement
	// CgroupParent is the cgroup under which the agent creates one cgroup
	// per function process: a directory of a cgroup v2 file system, or of
	// a v1 memory hierarchy. Default: the agent's own cgroup.
	CgroupParent string
	// ProbeTimeout bounds each probe of protocol detection, which runs
	// when neither the manifest nor the load request names the protocol.
	// Default 2 s.
	ProbeTimeout time.Duration
	// LogSink receives the function's output, one record per line.
	// Default: SlogSink(Logger).
	LogSink LogSink
	// LogLineBytes bounds one line of function output; longer lines are
	// cut (and counted). Default 16 KiB, at least 256.
	LogLineBytes int
	// LogRate bounds the lines of function output per second per instance
	// (a token bucket of LogBurst lines); lines beyond are dropped and
	// counted, and the next line that passes is preceded by a record of
	// how many were dropped. Default 1000; negative: unbounded.
	LogRate float64
	// LogBurst is the token bucket's size. Default 2000.
	LogBurst int
}

// RunAs names the user and group of function processes.
type RunAs struct {
	UID, GID uint32
}

func (c *Config) validate() error {
	var errs []error
	if !lifecycle.ValidControlToken(c.ControlToken) {
		errs = append(errs, fmt.Errorf("a ControlToken of %d to %d printable bytes is required", lifecycle.MinControlTokenLen, lifecycle.MaxControlTokenLen))
	}
	if c.RunAs != nil && os.Geteuid() != 0 {
		errs = append(errs, errors.New("RunAs needs an agent running as root"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("a Store is required"))
	}
	if c.WorkDir == "" {
		errs = append(errs, errors.New("a WorkDir is required"))
	}
	if c.Runtime == "" {
		errs = append(errs, errors.New("a Runtime is required"))
	}
	if c.StartTimeout < 0 || c.InitTimeout < 0 || c.StopGrace < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if c.MaxConcurrency < 0 || c.TreeCacheSize < 0 {
		errs = append(errs, errors.New("MaxConcurrency and TreeCacheSize must not be negative"))
	}
	if c.Bootstrap != nil && c.Bootstrap.Path == "" {
		errs = append(errs, errors.New("a Bootstrap needs a Path"))
	}
	if !c.MemoryEnforcement.valid() {
		errs = append(errs, fmt.Errorf("MemoryEnforcement %q: want \"\", cgroup, rlimit or none", c.MemoryEnforcement))
	}
	if c.ProbeTimeout < 0 || c.LogLineBytes < 0 || c.LogBurst < 0 {
		errs = append(errs, errors.New("ProbeTimeout, LogLineBytes and LogBurst must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent: invalid config: %w", err)
	}
	return nil
}

func (c *Config) setDefaults() error {
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.InitTimeout == 0 {
		c.InitTimeout = DefaultInitTimeout
	}
	if c.StopGrace == 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
	if c.TreeCacheSize == 0 {
		c.TreeCacheSize = DefaultTreeCacheSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.LogSink == nil {
		c.LogSink = SlogSink(c.Logger)
	}
	if c.LogLineBytes == 0 {
		c.LogLineBytes = DefaultLogLineBytes
	}
	c.LogLineBytes = max(c.LogLineBytes, 256)
	if c.LogRate == 0 {
		c.LogRate = DefaultLogRate
	}
	if c.LogBurst == 0 {
		c.LogBurst = DefaultLogBurst
	}
	if c.Bootstrap != nil {
		b := *c.Bootstrap
		if !filepath.IsAbs(b.Path) {
			p, err := exec.LookPath(b.Path)
			if err != nil {
				return fmt.Errorf("agent: the %s bootstrap: %w", c.Runtime, err)
			}
			b.Path = p
		}
		c.Bootstrap = &b
	}
	if c.BaseEnv == nil {
		for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ"} {
			if v, ok := os.LookupEnv(k); ok {
				c.BaseEnv = append(c.BaseEnv, k+"="+v)
			}
		}
	}
	abs, err := filepath.Abs(c.WorkDir)
	if err != nil {
		return fmt.Errorf("agent: work dir: %w", err)
	}
	c.WorkDir = abs
	if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
		return fmt.Errorf("agent: work dir: %w", err)
	}
	if c.TreeDir != "" {
		if c.TreeDir, err = filepath.Abs(c.TreeDir); err != nil {
			return fmt.Errorf("agent: tree dir: %w", err)
		}
		if err := os.MkdirAll(c.TreeDir, 0o755); err != nil {
			return fmt.Errorf("agent: tree dir: %w", err)
		}
	}
	return nil
}
