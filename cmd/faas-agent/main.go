// Command faas-agent is the runtime agent as a program: what a pod image
// runs. It serves invocations on -listen (every request goes to the loaded
// function, whatever its path) and the agent protocol (package lifecycle)
// on -control-listen, to callers that present the pod's control token; a
// POST /v1/load there turns the pod into an instance of one function.
//
// Usage:
//
//	FAAS_CONTROL_TOKEN=... faas-agent -listen 0.0.0.0:8080 -control-listen 0.0.0.0:8081 \
//	    -work-dir /var/run/faas -runtime go -node node-1 -code-cache-dir /var/cache/faas
//
// Flags:
//
//	-listen          address for invocations (default 127.0.0.1:8080); port 0
//	                 picks a free port
//	-control-listen  address for the control protocol (default 127.0.0.1:8081)
//	-control-token-file  file holding the pod's control token (first line);
//	                 "-" reads it from standard input. Without it, the token
//	                 comes from the environment variable FAAS_CONTROL_TOKEN,
//	                 which function processes do not inherit. Required either
//	                 way: the token is never a flag, which any user could see.
//	-work-dir        directory for the function's unpacked code (default: a
//	                 new temporary directory, removed at exit)
//	-runtime         the runtime this pod provides (default "go")
//	-node            the node's name, reported by /v1/ping (default: host name)
//	-code-cache-dir  the node's code cache, shared by its agents: packages in
//	                 <dir>/packages (LRU, -code-cache-bytes), unpacked trees in
//	                 <dir>/trees (default: no cache)
//	-code-cache-bytes  byte budget of the package cache (default 2 GiB)
//	-file-root       directory that file:// code URIs may name (default "/")
//	-run-as          UID:GID to run function processes as (the agent must run
//	                 as root); default: the agent's own user
//	-log-level       debug, info, warn or error (default info)
//	-log-format      text or json (default text); logs go to stderr
//	-pod             the pod's ID: it tags the function's log records and the
//	                 agent's statistics (default: none)
//	-bootstrap       the runtime's bootstrap (RUNTIMES.md): "auto" (default:
//	                 the shipped one when -runtime is python or node, else
//	                 none), "builtin:NAME" (a shipped runtime: python, node),
//	                 "none" (every load starts the manifest's command), or a
//	                 command line (words separated by spaces). Also
//	                 $FAAS_BOOTSTRAP when the flag is not given.
//	-bootstrap-mode  hot (default: the bootstrap starts with the agent and a
//	                 load hot-loads the function into it) or exec (a
//	                 bootstrap is started for each load)
//	-memory-limit    how a load's memory limit is enforced: auto (default: a
//	                 cgroup when the agent can create one, else a process
//	                 limit), cgroup, rlimit or none
//	-cgroup-parent   the cgroup under which function cgroups are created
//	                 (default: the agent's own)
//	-log-rate        lines of function output per second (default 1000;
//	                 negative: unbounded), -log-burst its burst (default 2000),
//	                 -log-line-bytes the longest line kept (default 16384)
//
// Once it listens, faas-agent prints one line to stdout, before anything
// else, so that a supervisor (pods/local) learns the bound addresses,
// invocations first:
//
//	FAAS_AGENT_LISTENING 127.0.0.1:40123 127.0.0.1:40124
//
// It stops on SIGTERM or SIGINT: it finishes in-flight requests for up to
// two seconds, stops the function's process group and exits 0.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/faasplane/faas/agent"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/runtimes"
)

// ListeningPrefix starts the line that announces the bound address.
const ListeningPrefix = "FAAS_AGENT_LISTENING"

func main() {
	protectMemory()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "faas-agent:", err)
		os.Exit(1)
	}
}

type options struct {
	listen, controlListen, tokenFile string
	workDir, runtime, node           string
	cacheDir, fileRoot               string
	cacheBytes                       int64
	runAs                            string
	logLevel, logFormat              string
	pod, bootstrap, bootstrapMode    string
	memoryLimit, cgroupParent        string
	logRate                          float64
	logBurst, logLineBytes           int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	host, _ := os.Hostname()
	var o options
	fs := flag.NewFlagSet("faas-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address for invocations; port 0 picks a free port")
	fs.StringVar(&o.controlListen, "control-listen", "127.0.0.1:8081", "address for the control protocol; port 0 picks a free port")
	fs.StringVar(&o.tokenFile, "control-token-file", "", `file holding the control token ("-": standard input); default: $FAAS_CONTROL_TOKEN`)
	fs.StringVar(&o.runAs, "run-as", "", "UID:GID to run function processes as (needs root)")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for the function's unpacked code (default: a new temporary directory)")
	fs.StringVar(&o.runtime, "runtime", "go", "the runtime this pod provides")
	fs.StringVar(&o.node, "node", host, "the node's name")
	fs.StringVar(&o.cacheDir, "code-cache-dir", "", "the node's code cache directory (packages and unpacked trees); empty: no cache")
	fs.Int64Var(&o.cacheBytes, "code-cache-bytes", 2<<30, "byte budget of the package cache")
	fs.StringVar(&o.fileRoot, "file-root", "/", "directory that file:// code URIs may name")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.pod, "pod", "", "the pod's ID, for log records and statistics")
	fs.StringVar(&o.bootstrap, "bootstrap", "", `the runtime's bootstrap: auto, none, builtin:NAME or a command line (default: $FAAS_BOOTSTRAP, else auto)`)
	fs.StringVar(&o.bootstrapMode, "bootstrap-mode", "hot", "hot (load into the bootstrap started with the agent) or exec (a bootstrap per load)")
	fs.StringVar(&o.memoryLimit, "memory-limit", "auto", "how memory limits are enforced: auto, cgroup, rlimit or none")
	fs.StringVar(&o.cgroupParent, "cgroup-parent", "", "the cgroup under which function cgroups are created (default: the agent's own)")
	fs.Float64Var(&o.logRate, "log-rate", agent.DefaultLogRate, "lines of function output per second (negative: unbounded)")
	fs.IntVar(&o.logBurst, "log-burst", agent.DefaultLogBurst, "burst of lines of function output")
	fs.IntVar(&o.logLineBytes, "log-line-bytes", agent.DefaultLogLineBytes, "longest line of function output kept")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.bootstrap == "" {
		o.bootstrap = cmp.Or(os.Getenv(BootstrapEnv), "auto")
	}
	switch o.bootstrapMode {
	case "hot", "exec":
	default:
		return o, fmt.Errorf("-bootstrap-mode: want hot or exec, got %q", o.bootstrapMode)
	}
	switch o.memoryLimit {
	case "auto", "cgroup", "rlimit", "none":
	default:
		return o, fmt.Errorf("-memory-limit: want auto, cgroup, rlimit or none, got %q", o.memoryLimit)
	}
	if o.logBurst <= 0 || o.logLineBytes <= 0 || o.logRate == 0 {
		return o, errors.New("-log-rate, -log-burst and -log-line-bytes must not be zero")
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.cacheBytes <= 0 {
		return o, errors.New("-code-cache-bytes must be > 0")
	}
	return o, nil
}

func newLogger(o options, stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, hopts)), nil
	default:
		return nil, fmt.Errorf("-log-format: want text or json, got %q", o.logFormat)
	}
}

// TokenEnv is the environment variable that carries the control token when
// -control-token-file is not given.
const TokenEnv = "FAAS_CONTROL_TOKEN"

// BootstrapEnv is the environment variable that names the bootstrap when
// -bootstrap is not given (same values).
const BootstrapEnv = "FAAS_BOOTSTRAP"

// bootstrapFor returns the bootstrap that -bootstrap names, installing a
// shipped runtime into the work directory; nil for none.
func bootstrapFor(ctx context.Context, o options) (*agent.Bootstrap, error) {
	name, builtin := strings.CutPrefix(o.bootstrap, "builtin:")
	switch {
	case o.bootstrap == "none":
		return nil, nil
	case o.bootstrap == "auto":
		if _, ok := runtimes.Builtin(o.runtime); !ok {
			return nil, nil
		}
		name, builtin = o.runtime, true
	}
	var b agent.Bootstrap
	if builtin {
		rt, ok := runtimes.Builtin(name)
		if !ok {
			return nil, fmt.Errorf("-bootstrap: no shipped runtime %q (have %s)", name, strings.Join(runtimes.Names(), ", "))
		}
		c, err := rt.Install(ctx, filepath.Join(o.workDir, ".runtime", name))
		if err != nil {
			return nil, err
		}
		b = agent.Bootstrap{Path: c.Path, Args: c.Args, Env: c.Env}
	} else {
		words := strings.Fields(o.bootstrap)
		if len(words) == 0 {
			return nil, errors.New("-bootstrap: empty command")
		}
		b = agent.Bootstrap{Path: words[0], Args: words[1:]}
	}
	b.Exec = o.bootstrapMode == "exec"
	return &b, nil
}

// controlToken reads the pod's control token from the file named by
// -control-token-file ("-": stdin), else from $FAAS_CONTROL_TOKEN, which it
// then removes from the environment.
func controlToken(o options, stdin io.Reader) (string, error) {
	var token string
	switch o.tokenFile {
	case "":
		token = os.Getenv(TokenEnv)
		_ = os.Unsetenv(TokenEnv)
		if token == "" {
			return "", fmt.Errorf("no control token: set -control-token-file or $%s", TokenEnv)
		}
	case "-":
		line, err := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("reading the control token from stdin: %w", err)
		}
		token = line
	default:
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return "", fmt.Errorf("-control-token-file: %w", err)
		}
		token, _, _ = strings.Cut(string(b), "\n")
	}
	token = strings.TrimSpace(token)
	if !lifecycle.ValidControlToken(token) {
		return "", fmt.Errorf("invalid control token: want %d to %d printable bytes", lifecycle.MinControlTokenLen, lifecycle.MaxControlTokenLen)
	}
	return token, nil
}

func parseRunAs(s string) (*agent.RunAs, error) {
	if s == "" {
		return nil, nil
	}
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("-run-as: want UID:GID, got %q", s)
	}
	return &agent.RunAs{UID: uint32(uid), GID: uint32(gid)}, nil
}

// run is the whole program; it returns when ctx is done.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	token, err := controlToken(o, stdin)
	if err != nil {
		return err
	}
	runAs, err := parseRunAs(o.runAs)
	if err != nil {
		return err
	}

	logger, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	if o.workDir == "" {
		if o.workDir, err = os.MkdirTemp("", "faas-agent-"); err != nil {
			return err
		}
		defer os.RemoveAll(o.workDir)
	}

	origin, err := code.NewOrigin(code.OriginConfig{Dir: o.fileRoot})
	if err != nil {
		return err
	}
	defer origin.Close()
	var store code.Store = origin
	treeDir := ""
	if o.cacheDir != "" {
		cache, err := code.NewDiskCache(code.CacheConfig{
			Dir: filepath.Join(o.cacheDir, "packages"), MaxBytes: o.cacheBytes, Logger: logger,
		}, origin)
		if err != nil {
			return err
		}
		defer cache.Close()
		store = cache
		treeDir = filepath.Join(o.cacheDir, "trees")
	}

	boot, err := bootstrapFor(ctx, o)
	if err != nil {
		return err
	}
	mem := agent.MemoryEnforcement(o.memoryLimit)
	if o.memoryLimit == "auto" {
		mem = agent.MemoryAuto
	}
	a, err := agent.New(agent.Config{
		Store: store, WorkDir: o.workDir, Runtime: o.runtime, Node: o.node,
		ControlToken: token, RunAs: runAs, TreeDir: treeDir, Logger: logger,
		Bootstrap: boot, Instance: o.pod, MemoryEnforcement: mem, CgroupParent: o.cgroupParent,
		LogRate: o.logRate, LogBurst: o.logBurst, LogLineBytes: o.logLineBytes,
	})
	if err != nil {
		return err
	}
	lns, err := agent.Listen(agent.Addrs{Invoke: o.listen, Control: o.controlListen})
	if err != nil {
		_ = a.Close()
		return err
	}
	if _, err := fmt.Fprintf(stdout, "%s %s %s\n", ListeningPrefix, lns.Invoke.Addr(), lns.Control.Addr()); err != nil {
		_ = lns.Close()
		_ = a.Close()
		return err
	}
	if err := a.Serve(ctx, lns); err != nil {
		_ = a.Close()
		return err
	}
	return a.Close()
}
