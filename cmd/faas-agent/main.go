// Command faas-agent is the runtime agent as a program: what a pod image
// runs. It serves the agent protocol (package lifecycle) on -listen and
// turns the pod into an instance of one function on POST /v1/load.
//
// Usage:
//
//	faas-agent -listen 127.0.0.1:0 -work-dir /var/run/faas -runtime go \
//	    -node node-1 -code-cache-dir /var/cache/faas -log-level info
//
// Flags:
//
//	-listen          address to serve on (default 127.0.0.1:8080); port 0
//	                 picks a free port
//	-work-dir        directory for the function's unpacked code (default: a
//	                 new temporary directory, removed at exit)
//	-runtime         the runtime this pod provides (default "go")
//	-node            the node's name, reported by /v1/ping (default: host name)
//	-code-cache-dir  the node's code cache, shared by its agents: packages in
//	                 <dir>/packages (LRU, -code-cache-bytes), unpacked trees in
//	                 <dir>/trees (default: no cache)
//	-code-cache-bytes  byte budget of the package cache (default 2 GiB)
//	-file-root       directory that file:// code URIs may name (default "/")
//	-log-level       debug, info, warn or error (default info)
//	-log-format      text or json (default text); logs go to stderr
//
// Once it listens, faas-agent prints one line to stdout, before anything
// else, so that a supervisor (pods/local) learns the bound address:
//
//	FAAS_AGENT_LISTENING 127.0.0.1:40123
//
// It stops on SIGTERM or SIGINT: it finishes in-flight requests for up to
// two seconds, stops the function's process group and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/faasplane/faas/agent"
	"github.com/faasplane/faas/coldstart/code"
)

// ListeningPrefix starts the line that announces the bound address.
const ListeningPrefix = "FAAS_AGENT_LISTENING"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "faas-agent:", err)
		os.Exit(1)
	}
}

type options struct {
	listen, workDir, runtime, node string
	cacheDir, fileRoot             string
	cacheBytes                     int64
	logLevel, logFormat            string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	host, _ := os.Hostname()
	var o options
	fs := flag.NewFlagSet("faas-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve on; port 0 picks a free port")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for the function's unpacked code (default: a new temporary directory)")
	fs.StringVar(&o.runtime, "runtime", "go", "the runtime this pod provides")
	fs.StringVar(&o.node, "node", host, "the node's name")
	fs.StringVar(&o.cacheDir, "code-cache-dir", "", "the node's code cache directory (packages and unpacked trees); empty: no cache")
	fs.Int64Var(&o.cacheBytes, "code-cache-bytes", 2<<30, "byte budget of the package cache")
	fs.StringVar(&o.fileRoot, "file-root", "/", "directory that file:// code URIs may name")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return o, err
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

// run is the whole program; it returns when ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
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

	a, err := agent.New(agent.Config{
		Store: store, WorkDir: o.workDir, Runtime: o.runtime, Node: o.node,
		TreeDir: treeDir, Logger: logger,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		_ = a.Close()
		return err
	}
	if _, err := fmt.Fprintf(stdout, "%s %s\n", ListeningPrefix, ln.Addr()); err != nil {
		_ = ln.Close()
		_ = a.Close()
		return err
	}
	if err := a.Serve(ctx, ln); err != nil {
		_ = a.Close()
		return err
	}
	return a.Close()
}
