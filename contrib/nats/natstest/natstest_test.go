package natstest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// No goroutine of the in-process server, the clients or the child-process
// waiters outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The script builds the version this package looks for, the one the
// module's in-process server is.
func TestToolVersionMatchesScript(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "tools", "ensure-tools.sh"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^NATS_SERVER_VERSION=(\S+)$`).FindSubmatch(script)
	require.NotNil(t, m, "ensure-tools.sh sets no NATS_SERVER_VERSION")
	require.Equal(t, ServerVersion, string(m[1]))
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	require.NoError(t, err)
	m = regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 (\S+)`).FindSubmatch(gomod)
	require.NotNil(t, m, "go.mod requires no nats-server")
	require.Equal(t, ServerVersion, string(m[1]))
}

// A binary named by the environment is not silently built elsewhere.
func TestEnsureServerRefusesMissingEnvPath(t *testing.T) {
	bogus := filepath.Join(t.TempDir(), "nats-server")
	t.Setenv(EnvServer, bogus)
	_, err := EnsureServer(t.Context(), nil)
	require.ErrorContains(t, err, EnvServer)
	require.ErrorContains(t, err, bogus)
}

// publishAndCount puts n messages into a stream "S" (created if missing)
// and returns the stream's message count.
func publishAndCount(t *testing.T, url string, n int) uint64 {
	t.Helper()
	nc, err := Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	for range n {
		_, err := js.Publish(ctx, "s.x", []byte("m"))
		require.NoError(t, err)
	}
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

func TestInProcessServerRestartKeepsStreams(t *testing.T) {
	srv, err := Start(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Close()
	require.Equal(t, uint64(3), publishAndCount(t, srv.URL(), 3))

	// A client connected across the restart reconnects to the same URL.
	nc, err := Connect(srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	require.NoError(t, srv.Restart())
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect within 10 s")
	}
	require.Equal(t, uint64(5), publishAndCount(t, srv.URL(), 2), "the 3 messages survived the restart")
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close())
}

func TestProcessKilledAndStartedKeepsStreamsOnDisk(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	p, err := StartProcess(ctx, Options{})
	require.NoError(t, err)
	defer p.Close()
	dir := p.Dir()
	require.Equal(t, uint64(4), publishAndCount(t, p.URL(), 4))

	pid := p.PID()
	require.NoError(t, p.Kill())
	require.Equal(t, 0, p.PID())
	require.ErrorIs(t, syscall.Kill(-pid, 0), syscall.ESRCH, "the process group is gone")
	require.NoError(t, p.Start(ctx))
	require.NotEqual(t, pid, p.PID())
	require.Equal(t, uint64(5), publishAndCount(t, p.URL(), 1), "JetStream's state on disk survived SIGKILL")

	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist, "Close removed the temporary directory")
}
