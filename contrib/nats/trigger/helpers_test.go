package trigger

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/faasplane/faas/contrib/nats/natstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// stream is a JetStream server with an ORDERS stream (orders.>) and a
// DEAD stream (dead.>) for the dead letters.
type stream struct {
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newStream(t testing.TB, url string) *stream {
	t.Helper()
	nc, err := natstest.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, subj := range map[string]string{"ORDERS": "orders.>", "DEAD": "dead.>"} {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.FileStorage})
		require.NoError(t, err)
	}
	return &stream{url: url, nc: nc, js: js}
}

func inProcess(t testing.TB) *stream {
	t.Helper()
	srv, err := natstest.Start(natstest.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return newStream(t, srv.URL())
}

// publish puts bodies on orders.new, waiting for every ack.
func (s *stream) publish(t testing.TB, bodies ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var futures []jetstream.PubAckFuture
	for i, b := range bodies {
		m := nats.NewMsg("orders.new")
		m.Data = []byte(b)
		m.Header.Set("Order-Index", fmt.Sprint(i))
		m.Header.Set("X-Faas-Caller", "spoofed") // faasplane's headers are not the publisher's to set
		f, err := s.js.PublishMsgAsync(m)
		require.NoError(t, err)
		futures = append(futures, f)
		if len(futures) == 1000 {
			s.wait(t, ctx, futures)
			futures = futures[:0]
		}
	}
	s.wait(t, ctx, futures)
}

func (s *stream) wait(t testing.TB, ctx context.Context, futures []jetstream.PubAckFuture) {
	t.Helper()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			require.NoError(t, err)
		case <-ctx.Done():
			t.Fatal("publish acks did not come")
		}
	}
}

// deadLetters returns the messages of the DEAD stream.
func (s *stream) deadLetters(t testing.TB) []*nats.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := s.js.Stream(ctx, "DEAD")
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	var out []*nats.Msg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := str.GetMsg(ctx, seq)
		require.NoError(t, err)
		out = append(out, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header})
	}
	return out
}

// pending returns the consumer's messages not yet delivered and not yet
// acknowledged.
func (s *stream) pending(t testing.TB, consumer string) (pending uint64, ackPending int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.js.Consumer(ctx, "ORDERS", consumer)
	if err != nil {
		return 1, 1 // not created yet
	}
	info, err := c.Info(ctx)
	require.NoError(t, err)
	return info.NumPending, info.NumAckPending
}

// running runs tr until the test ends or stop is called; stop returns
// Run's error.
func running(t testing.TB, tr *Trigger) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30 s of its context's end")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
