package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/contrib/nats/hostagent"
	"github.com/faasplane/faas/contrib/nats/internal/testenv"
	"github.com/faasplane/faas/contrib/nats/natstest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		err  string
		want func(o options) bool
	}{
		{"defaults", []string{"-pods", "p.json"}, "", func(o options) bool {
			return o.natsURL == nats.DefaultURL && o.interval == hostagent.DefaultInterval && o.heartbeat == health.DefaultHeartbeat && o.failureThreshold == 2
		}},
		{"all", []string{"-pods", "p", "-node", "n1", "-nats", "nats://h:1", "-interval", "100ms", "-heartbeat", "2s", "-failure-threshold", "3", "-prefix", "x.y"}, "", func(o options) bool {
			return o.node == "n1" && o.natsURL == "nats://h:1" && o.interval == 100*time.Millisecond && o.heartbeat == 2*time.Second && o.failureThreshold == 3 && o.prefix == "x.y"
		}},
		{"no pods file", nil, "-pods is required", nil},
		{"extra argument", []string{"-pods", "p", "extra"}, "unexpected arguments", nil},
		{"bad duration", []string{"-pods", "p", "-interval", "soon"}, "invalid value", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.True(t, tc.want(o), "%+v", o)
		})
	}
}

func TestRunRefusesBadSettings(t *testing.T) {
	srv, err := natstest.Start(natstest.Options{})
	require.NoError(t, err)
	defer srv.Close()
	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{"bad log level", []string{"-pods", "p", "-log-level", "loud"}, "-log-level"},
		{"no server", []string{"-pods", "p", "-nats", "nats://127.0.0.1:1"}, "connecting to"},
		{"bad node", []string{"-pods", "p", "-nats", srv.URL(), "-node", "a b"}, "invalid config"},
	} {
		err := run(t.Context(), tc.args, io.Discard, io.Discard)
		assert.ErrorContains(t, err, tc.err, tc.name)
	}
}

// The command as a process: it reads the pods file that a provider's
// pods were written to, reports the exit of a real function process, and
// stops on SIGTERM.
func TestCommandReportsAnExitedFunction(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bins, err := testenv.Build(ctx, filepath.Join(dir, "bin"), testenv.AgentPackage, testenv.HelloPackage, "github.com/faasplane/faas/contrib/nats/cmd/faas-hostagent")
	require.NoError(t, err)
	hello, err := testenv.Pack(bins[1], dir, code.Manifest{})
	require.NoError(t, err)
	srv, err := natstest.Start(natstest.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Close()
	nc, err := natstest.Connect(srv.URL())
	require.NoError(t, err)
	defer nc.Close()

	pods, err := local.New(ctx, local.Config{AgentPath: bins[0], Nodes: []string{"node-a"}})
	require.NoError(t, err)
	defer pods.Close()
	origin, err := code.NewOrigin(code.OriginConfig{Dir: dir})
	require.NoError(t, err)
	defer origin.Close()
	dp, err := faas.New(faas.Config{Pods: pods, Code: origin,
		Pool: warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 2}}, ProbeInterval: -1}})
	require.NoError(t, err)
	require.NoError(t, dp.Start(ctx))
	defer dp.Close()
	require.NoError(t, dp.Deploy(ctx, faas.FunctionSpec{ID: "hello", Runtime: "go", Code: hello, MinInstances: 1}))
	var inst *lifecycle.Instance
	require.Eventually(t, func() bool {
		for _, ri := range dp.Routes("hello") {
			if ri.Routable {
				inst = ri.Instance
				return true
			}
		}
		return false
	}, 30*time.Second, 10*time.Millisecond)
	list, err := pods.List(ctx)
	require.NoError(t, err)
	podsFile := filepath.Join(dir, "pods.json")
	require.NoError(t, hostagent.WritePods(podsFile, list))

	changes, err := nc.SubscribeSync("faas.health.node.node-a")
	require.NoError(t, err)
	cmd := exec.Command(bins[2], "-nats", srv.URL(), "-node", "node-a", "-pods", podsFile, "-interval", "50ms", "-heartbeat", "100ms")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, ReadyPrefix+"node-a", strings.TrimSpace(line))

	pr, err := (&lifecycle.Client{}).Ping(ctx, inst.Control)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pr.PID, syscall.SIGKILL))
	deadline := time.Now().Add(20 * time.Second)
	var exited *health.PodStatus
	for exited == nil && time.Now().Before(deadline) {
		m, err := changes.NextMsg(10 * time.Second)
		require.NoError(t, err)
		msg, err := health.Decode(m.Data)
		require.NoError(t, err)
		for _, p := range msg.Pods {
			if p.Pod == inst.PodID && p.State == health.StateExited {
				exited = &p
			}
		}
	}
	require.NotNil(t, exited, "the host agent reported the exit")
	assert.Contains(t, exited.Reason, "function_exited")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "SIGTERM stops it cleanly")
}
