// Command mqtrigger is a message-queue trigger: a consumer loop that reads
// messages and invokes a function for each through Dataplane.Invoke, the
// in-process path that bypasses the HTTP gateway. It runs a bounded number
// of invocations at once, honours the dataplane's back-pressure (a shed
// request is retried after its Retry-After hint, so no message is lost
// under overload) and dead-letters what fails for good.
//
// The queue here is a channel fed with 500 messages; in production it is
// your Kafka, NATS or SQS consumer, acknowledging a message when Invoke
// returns.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/pods/local"
)

// message is one queued event.
type message struct {
	ID   int
	Body []byte
}

// consumer turns messages into invocations.
type consumer struct {
	dp          *faas.Dataplane
	function    string
	parallelism int
	maxAttempts int

	done, retried, deadLettered atomic.Int64
}

// consume invokes the function for every message of queue until it closes.
func (c *consumer) consume(ctx context.Context, queue <-chan message) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallelism)
	for msg := range queue {
		g.Go(func() error { return c.handle(ctx, msg) })
	}
	return g.Wait()
}

func (c *consumer) handle(ctx context.Context, msg message) error {
	for attempt := 1; ; attempt++ {
		resp, err := c.dp.Invoke(ctx, &faas.Request{
			FunctionID: c.function,
			Body:       msg.Body,
			Caller:     "orders-queue", // fair shedding among triggers and tenants
			Idempotent: true,           // the handler tolerates redelivery
			RequestID:  fmt.Sprintf("msg-%d-%d", msg.ID, attempt),
		})
		if err == nil && resp.StatusCode < 500 {
			c.done.Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := 50 * time.Millisecond << min(attempt, 5) // back off
		if after, shed := faas.RetryAfter(err); shed {
			wait = after // back-pressure: the dataplane says when
		}
		if attempt == c.maxAttempts || errors.Is(err, lifecycle.CodeFunctionNotFound) {
			c.deadLettered.Add(1)
			return nil
		}
		c.retried.Add(1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func run(ctx context.Context, w io.Writer, messages int) error {
	dir, err := os.MkdirTemp("", "mqtrigger-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pkg, err := code.PackGo(ctx, "github.com/faasplane/faas/examples/functions/hello", code.Manifest{})
	if err != nil {
		return err
	}
	pkgPath := filepath.Join(dir, "hello.tar.gz")
	if err := os.WriteFile(pkgPath, pkg, 0o644); err != nil {
		return err
	}
	ref := code.RefFor("file://"+pkgPath, pkg)
	pods, err := local.New(ctx, local.Config{Dir: filepath.Join(dir, "pods")})
	if err != nil {
		return err
	}
	defer pods.Close()
	origin, err := code.NewOrigin(code.OriginConfig{Dir: dir})
	if err != nil {
		return err
	}
	defer origin.Close()
	dp, err := faas.New(faas.Config{Pods: pods, Code: origin})
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.Start(ctx); err != nil {
		return err
	}
	if err := dp.Deploy(ctx, faas.FunctionSpec{ID: "process-order", Runtime: "go", Code: ref, Concurrency: 8}); err != nil {
		return err
	}

	queue := make(chan message, 64)
	go func() {
		defer close(queue)
		for i := range messages {
			select {
			case queue <- message{ID: i, Body: fmt.Appendf(nil, `{"order":%d}`, i)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	c := &consumer{dp: dp, function: "process-order", parallelism: 32, maxAttempts: 5}
	start := time.Now()
	if err := c.consume(ctx, queue); err != nil {
		return err
	}
	fs, _ := dp.FunctionStats("process-order")
	fmt.Fprintf(w, "consumed %d messages in %v: %d done, %d retries, %d dead-lettered; %d cold starts, p50 %v p99 %v\n",
		messages, time.Since(start).Round(time.Millisecond), c.done.Load(), c.retried.Load(), c.deadLettered.Load(),
		fs.ColdStarts.Count, fs.Latency.P50, fs.Latency.P99)
	if c.done.Load() != int64(messages) {
		return fmt.Errorf("%d of %d messages not processed", int64(messages)-c.done.Load(), messages)
	}
	return nil
}

func main() {
	n := flag.Int("messages", 500, "messages to consume")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *n); err != nil {
		fmt.Fprintln(os.Stderr, "mqtrigger:", err)
		os.Exit(1)
	}
}
