package kubetest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// TestMain fails the run if any goroutine outlives the tests: Close must
// leave nothing of etcd, the clients, the watches or the child-process
// waiters behind. No goroutine is exempt.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The script builds the versions this package looks for in the cache.
func TestToolVersionsMatchScript(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "tools", "ensure-tools.sh"))
	require.NoError(t, err)
	for name, want := range map[string]string{"KUBE_VERSION": KubeVersion, "KWOK_VERSION": KwokVersion} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(script)
		require.NotNil(t, m, "ensure-tools.sh sets no %s", name)
		require.Equal(t, want, string(m[1]), "ensure-tools.sh %s", name)
	}
	gomod, err := os.ReadFile(filepath.Join("..", "tools", "kube-apiserver", "go.mod"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^require k8s\.io/kubernetes (\S+)`).FindSubmatch(gomod)
	require.NotNil(t, m, "tools go.mod requires no k8s.io/kubernetes")
	require.Equal(t, KubeVersion, string(m[1]))
	// Every staging module at the release kube-apiserver was cut with.
	staging := "v0." + strings.TrimPrefix(KubeVersion, "v1.")
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[1] == "=>" && strings.HasPrefix(f[0], "k8s.io/") {
			require.Equal(t, staging, f[3], "replace line %q", line)
		}
	}
}

// A tool named by the environment is not silently rebuilt elsewhere.
func TestEnsureToolsRefusesMissingEnvPath(t *testing.T) {
	bogus := filepath.Join(t.TempDir(), "kube-apiserver")
	t.Setenv(EnvKubeAPIServer, bogus)
	_, err := EnsureTools(t.Context(), io.Discard)
	require.Error(t, err)
	require.Contains(t, err.Error(), EnvKubeAPIServer)
	require.Contains(t, err.Error(), bogus)
}

// With a tool missing from the cache, EnsureTools runs ensure-tools.sh,
// which builds only what is missing: here the stage file, from the kwok
// module source (the binaries are linked in from the real cache, so this
// takes seconds, not the 7 minutes of a cold build).
func TestEnsureToolsBuildsWhatIsMissing(t *testing.T) {
	real, err := EnsureTools(t.Context(), nil)
	require.NoError(t, err)
	for _, env := range []string{EnvKubeAPIServer, EnvKwok, EnvKwokStages} {
		t.Setenv(env, "") // as if unset: the cache decides
	}
	cache := t.TempDir()
	t.Setenv(EnvToolsCache, cache)
	want := DefaultTools()
	require.NoError(t, os.MkdirAll(filepath.Dir(want.KubeAPIServer), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Dir(want.Kwok), 0o755))
	require.NoError(t, os.Symlink(real.KubeAPIServer, want.KubeAPIServer))
	require.NoError(t, os.Symlink(real.Kwok, want.Kwok))

	var progress bytes.Buffer
	got, err := EnsureTools(t.Context(), &progress)
	require.NoError(t, err, "progress:\n%s", progress.String())
	require.Equal(t, want, got)
	out := progress.String()
	require.Contains(t, out, "kube-apiserver "+KubeVersion+": cached")
	require.Contains(t, out, "kwok "+KwokVersion+": cached")
	require.Contains(t, out, "kwok stages: written")
	stages, err := os.ReadFile(got.KwokStages)
	require.NoError(t, err)
	for _, name := range []string{"node-initialize", "pod-ready", "pod-complete", "pod-delete"} {
		require.Contains(t, string(stages), "name: "+name+"\n")
	}
	require.Equal(t, 3, strings.Count(string(stages), "\n---\n"), "four documents")
}

// An apiserver that cannot start makes Start fail with the reason from its
// log, and cleans up after itself.
func TestStartReportsAPIServerFailure(t *testing.T) {
	_, err := Start(t.Context(), Options{APIServerArgs: []string{"--no-such-flag"}})
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, "kube-apiserver exited before /readyz")
	require.Contains(t, msg, "unknown flag: --no-such-flag", "the log's tail is in the error")
	requireNoChildren(t)
}

func TestControlPlane(t *testing.T) {
	ctx := t.Context()
	cp, err := Start(ctx, Options{Dir: t.TempDir()})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = cp.Close()
		}
	})
	tm := cp.Timings
	t.Logf("start %v: tools %v, etcd ready %v, apiserver /readyz %v, namespaces %v, kwok exec %v",
		tm.Total, tm.Tools, tm.Etcd, tm.APIServer, tm.Bootstrap, tm.Kwok)

	t0 := time.Now()
	node, err := cp.AddNode(ctx, "node-0")
	require.NoError(t, err)
	t.Logf("node Ready %v after create", time.Since(t0))
	require.True(t, NodeReady(node))
	require.Equal(t, NodeAnnotationValue, node.Annotations[NodeAnnotation])

	t.Run("PodRunsAndIsReachableAndDeletes", func(t *testing.T) {
		pods := cp.Client.CoreV1().Pods("default")
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "fn-0", Namespace: "default"},
			Spec: corev1.PodSpec{
				NodeName:   "node-0",
				Containers: []corev1.Container{{Name: "fn", Image: "example.invalid/fn"}},
			},
		}
		t0 := time.Now()
		_, err := pods.Create(ctx, pod, metav1.CreateOptions{})
		require.NoError(t, err)
		running, err := cp.WaitForPod(ctx, "default", "fn-0", PodRunning)
		require.NoError(t, err)
		t.Logf("pod Running %v after create, IP %s", time.Since(t0), running.Status.PodIP)

		ip := net.ParseIP(running.Status.PodIP)
		require.NotNil(t, ip, "pod IP %q", running.Status.PodIP)
		require.True(t, cp.PodCIDR.Contains(ip), "pod IP %s not in %s", ip, cp.PodCIDR)

		// The pod IP is a real loopback address: the test plays the pod's
		// process. Port 0, because another control plane on this machine
		// hands out the same IPs.
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		require.NoError(t, err)
		defer ln.Close()
		served := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			defer c.Close()
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				served <- err
				return
			}
			_, err = io.WriteString(c, "pong from "+c.LocalAddr().String()+"\n")
			served <- err
		}()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = io.WriteString(c, "ping\n")
		require.NoError(t, err)
		reply, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "pong from "+ln.Addr().String()+"\n", reply)
		require.NoError(t, <-served)

		// kwok plays the kubelet: it sees the deletionTimestamp and removes
		// the pod, so a graceful delete completes.
		t0 = time.Now()
		require.NoError(t, pods.Delete(ctx, "fn-0", metav1.DeleteOptions{}))
		require.NoError(t, cp.WaitForPodGone(ctx, "default", "fn-0"))
		t.Logf("pod gone %v after delete", time.Since(t0))
		_, err = pods.Get(ctx, "fn-0", metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "get after delete: %v", err)
	})

	t.Run("StaleUpdateConflicts", func(t *testing.T) {
		cms := cp.Client.CoreV1().ConfigMaps("default")
		cm, err := cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "cas"},
			Data:       map[string]string{"owner": "a"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		stale := cm.DeepCopy()

		cm.Data["owner"] = "b"
		updated, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
		require.NoError(t, err)
		require.NotEqual(t, stale.ResourceVersion, updated.ResourceVersion)

		// A compare-and-set on the old resourceVersion must lose: this is
		// the behaviour a fake clientset does not have.
		stale.Data["owner"] = "c"
		_, err = cms.Update(ctx, stale, metav1.UpdateOptions{})
		require.True(t, apierrors.IsConflict(err), "stale update: %v", err)
		var status apierrors.APIStatus
		require.ErrorAs(t, err, &status)
		require.EqualValues(t, 409, status.Status().Code)

		got, err := cms.Get(ctx, "cas", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, "b", got.Data["owner"])

		// And the apiserver keeps it in the embedded etcd, not in memory.
		ec, err := clientv3.New(clientv3.Config{Endpoints: []string{cp.EtcdEndpoint}, DialTimeout: 5 * time.Second})
		require.NoError(t, err)
		defer ec.Close()
		kv, err := ec.Get(ctx, "/registry/configmaps/default/cas")
		require.NoError(t, err)
		require.Len(t, kv.Kvs, 1)
		require.True(t, bytes.HasPrefix(kv.Kvs[0].Value, []byte("k8s\x00")), "stored as Kubernetes protobuf")
		// resourceVersion is etcd's revision of the key.
		require.Equal(t, updated.ResourceVersion, strconv.FormatInt(kv.Kvs[0].ModRevision, 10))
	})

	t.Run("KubeconfigAndRBAC", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", cp.KubeconfigPath)
		require.NoError(t, err)
		admin, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)
		_, err = admin.CoreV1().Nodes().Get(ctx, "node-0", metav1.GetOptions{})
		require.NoError(t, err)

		// RBAC is on: without the token, listing pods is forbidden.
		anon, err := kubernetes.NewForConfig(rest.AnonymousClientConfig(cp.Config))
		require.NoError(t, err)
		_, err = anon.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		require.True(t, apierrors.IsForbidden(err), "anonymous list: %v", err)

		v, err := admin.Discovery().ServerVersion()
		require.NoError(t, err)
		require.Equal(t, KubeVersion, v.GitVersion)
	})

	apiserverPid, kwokPid := cp.Pids()
	require.NotZero(t, apiserverPid)
	require.NotZero(t, kwokPid)
	t.Logf("memory: kube-apiserver %s, kwok %s", rss(apiserverPid), rss(kwokPid))
	t0 = time.Now()
	require.NoError(t, cp.Close())
	closed = true
	t.Logf("Close took %v", time.Since(t0))
	require.NoError(t, cp.Close(), "Close twice")
	requireGroupsGone(t, apiserverPid, kwokPid)
	requireNoChildren(t)
}
