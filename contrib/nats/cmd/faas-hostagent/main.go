// Command faas-hostagent is the host agent of one node: it reads the pods
// of its node from a pods file (see hostagent.ParsePods; a node daemon
// keeps it up to date, mode 0600 since it holds the pods' control tokens),
// pings each pod's agent on its control listener every -interval, and
// publishes the verdicts that change, plus heartbeats, on NATS, where the
// dataplanes' health.Source subscribes.
//
//	faas-hostagent -nats nats://127.0.0.1:4222 -node node-a -pods /run/faas/pods.json
//
// It prints "FAAS_HOSTAGENT_READY <node>" on stdout once it is connected and
// publishing, logs to stderr, and stops on SIGINT or SIGTERM. If it dies,
// its heartbeats stop and the dataplanes fall back to their own pull checks
// for its node's instances three heartbeats later.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/contrib/nats/hostagent"
)

// ReadyPrefix starts the line printed once the agent publishes.
const ReadyPrefix = "FAAS_HOSTAGENT_READY "

// options are the command's flags.
type options struct {
	natsURL, node, podsFile, prefix, logLevel string
	interval, heartbeat, resync, pingTimeout  time.Duration
	failureThreshold                          int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("faas-hostagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.natsURL, "nats", nats.DefaultURL, "NATS server URL(s), comma-separated")
	fs.StringVar(&o.node, "node", host, "this node's name, as the pods' Node field says it")
	fs.StringVar(&o.podsFile, "pods", "", "pods file (JSON, mode 0600); required")
	fs.StringVar(&o.prefix, "prefix", health.DefaultPrefix, "subject prefix")
	fs.DurationVar(&o.interval, "interval", hostagent.DefaultInterval, "time between two pings of a pod")
	fs.DurationVar(&o.pingTimeout, "ping-timeout", 0, "bound of one ping (default: -interval)")
	fs.IntVar(&o.failureThreshold, "failure-threshold", hostagent.DefaultFailureThreshold, "failed pings in a row before a pod is reported down")
	fs.DurationVar(&o.heartbeat, "heartbeat", health.DefaultHeartbeat, "heartbeat interval")
	fs.DurationVar(&o.resync, "resync", 2*time.Second, "how often the pods file is read again")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.podsFile == "" {
		return o, errors.New("-pods is required")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	nc, err := nats.Connect(o.natsURL, nats.Name("faas-hostagent "+o.node), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrl()) }))
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", o.natsURL, err)
	}
	defer nc.Close()
	a, err := hostagent.New(hostagent.Config{
		Node: o.node, Pods: hostagent.FileLister{Path: o.podsFile}, Conn: nc, Prefix: o.prefix,
		Interval: o.interval, PingTimeout: o.pingTimeout, FailureThreshold: o.failureThreshold,
		Heartbeat: o.heartbeat, Resync: o.resync, Logger: log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	fmt.Fprintln(stdout, ReadyPrefix+o.node)
	log.Info("host agent running", "node", o.node, "nats", nc.ConnectedUrl(), "pods", o.podsFile, "interval", o.interval)
	err = <-done
	if errors.Is(err, context.Canceled) {
		log.Info("host agent stopped")
		return nil
	}
	return err
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "faas-hostagent:", err)
		os.Exit(1)
	}
}
