package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
)

// Defaults for Options.
const (
	DefaultTimeout = 2 * time.Minute
	// DefaultPodCIDR is where kwok takes pod IPs from. 127.0.1.0/24 rather
	// than kwok's 10.0.0.0/24: loopback addresses exist on every machine, so
	// a test can listen on a pod's IP as if it were the pod.
	DefaultPodCIDR = "127.0.1.0/24"
	// ServiceCIDR is the apiserver's --service-cluster-ip-range. Nothing
	// routes there: ClusterIPs are only allocated, never dialled.
	ServiceCIDR = "10.0.0.0/24"
)

// Options configures Start. The zero value is ready to use.
type Options struct {
	// Dir holds etcd's data, the keys, the kubeconfig and the children's
	// logs. Empty: a new temporary directory that Close removes (a given
	// Dir, such as t.TempDir(), is left alone).
	Dir string
	// Timeout bounds each wait: etcd ready, /readyz, the system
	// namespaces, and later AddNode and the WaitFor helpers. Building
	// missing tools is bounded only by Start's context. Zero:
	// DefaultTimeout.
	Timeout time.Duration
	// Tools overrides EnsureTools' search (and build).
	Tools *Tools
	// ToolsOutput receives ensure-tools.sh's progress if the tools must be
	// built. Nil: os.Stderr, so that a 7-minute build is not silent.
	ToolsOutput io.Writer
	// PodCIDR is kwok's --cidr. Empty: DefaultPodCIDR.
	PodCIDR string
	// APIServerArgs are appended to kube-apiserver's flags; a flag given
	// twice takes the last value, so these can override the defaults.
	APIServerArgs []string
	// KwokArgs are appended to kwok's flags.
	KwokArgs []string
}

// Timings says how long each part of Start took.
type Timings struct {
	Tools     time.Duration // finding (or building) the binaries
	Etcd      time.Duration // embedded etcd until ready
	APIServer time.Duration // kube-apiserver from exec until /readyz is 200
	Bootstrap time.Duration // until the default and kube-node-lease namespaces exist
	Kwok      time.Duration // starting kwok (it has no readiness of its own: see AddNode)
	Total     time.Duration
}

// ControlPlane is a running etcd, kube-apiserver and kwok. Its exported
// fields are set by Start and must not be changed.
type ControlPlane struct {
	// Dir is the working directory: etcd/, certs, tokens.csv,
	// kubeconfig, kube-apiserver.log and kwok.log.
	Dir string
	// KubeconfigPath is an admin kubeconfig for tools (kubectl, kwok).
	KubeconfigPath string
	// Config authenticates as the admin (group system:masters). Copy it
	// with rest.CopyConfig before changing it.
	Config *rest.Config
	// Client is a clientset on Config.
	Client kubernetes.Interface
	// URL is the apiserver's address, https://127.0.0.1:PORT.
	URL string
	// EtcdEndpoint is the embedded etcd's client URL; the apiserver keeps
	// its objects under /registry there.
	EtcdEndpoint string
	// PodCIDR is the network kwok assigns pod IPs from.
	PodCIDR *net.IPNet
	// Timings are Start's.
	Timings Timings

	timeout   time.Duration
	removeDir bool
	etcd      *embed.Etcd
	apiserver *child
	kwok      *child

	closeOnce sync.Once
	closeErr  error
}

// Start runs a control plane on 127.0.0.1: embedded etcd, kube-apiserver
// (RBAC on, token authentication, no controller-manager or scheduler) and
// kwok, which plays the kubelet for nodes made with AddNode. It returns
// once the apiserver is ready and the system namespaces exist; the caller
// must Close the control plane (typically with t.Cleanup). If Start fails
// it has already cleaned up, and its error ends with the tail of the
// failing child's log. ctx bounds Start only, not the control plane's life.
//
// If the binaries are not found (see EnsureTools), Start builds them first,
// which takes minutes the first time on a machine.
func Start(ctx context.Context, opts Options) (started *ControlPlane, err error) {
	t0 := time.Now()
	cp := &ControlPlane{timeout: opts.Timeout, Dir: opts.Dir}
	if cp.timeout <= 0 {
		cp.timeout = DefaultTimeout
	}
	cidr := opts.PodCIDR
	if cidr == "" {
		cidr = DefaultPodCIDR
	}
	if _, cp.PodCIDR, err = net.ParseCIDR(cidr); err != nil {
		return nil, fmt.Errorf("kubetest: PodCIDR: %w", err)
	}

	var tools Tools
	if opts.Tools != nil {
		tools = *opts.Tools
		if missing, _ := tools.missing(); len(missing) > 0 {
			return nil, fmt.Errorf("kubetest: Options.Tools: missing %v", missing)
		}
	} else if tools, err = EnsureTools(ctx, opts.ToolsOutput); err != nil {
		return nil, err
	}
	cp.Timings.Tools = time.Since(t0)

	if cp.Dir == "" {
		if cp.Dir, err = os.MkdirTemp("", "kubetest-"); err != nil {
			return nil, fmt.Errorf("kubetest: %w", err)
		}
		cp.removeDir = true
	}
	// From here on, a failure tears down whatever was started.
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Close())
			started = nil
		}
	}()

	t := time.Now()
	etcdCtx, cancel := context.WithTimeout(ctx, cp.timeout)
	cp.etcd, cp.EtcdEndpoint, err = startEtcd(etcdCtx, cp.Dir)
	cancel()
	if err != nil {
		return cp, err
	}
	cp.Timings.Etcd = time.Since(t)

	creds, err := writeCredentials(cp.Dir)
	if err != nil {
		return cp, err
	}

	t = time.Now()
	if err = cp.startAPIServer(ctx, tools, creds, opts.APIServerArgs); err != nil {
		return cp, err
	}
	cp.Timings.APIServer = time.Since(t)

	t = time.Now()
	// The apiserver is ready before its bootstrap controller has created the
	// system namespaces: a pod in "default" could be refused for a moment,
	// and kwok needs kube-node-lease for node leases.
	for _, ns := range []string{"default", "kube-node-lease"} {
		if err = cp.waitForNamespace(ctx, ns); err != nil {
			return cp, cp.apiserver.failure(err)
		}
	}
	cp.Timings.Bootstrap = time.Since(t)

	t = time.Now()
	args := []string{
		"--kubeconfig=" + cp.KubeconfigPath,
		"--config=" + tools.KwokStages,
		// Only nodes that ask for it: a test (or the adapter) may register a
		// node that kwok must leave alone.
		"--manage-nodes-with-annotation-selector=" + NodeAnnotation + "=" + NodeAnnotationValue,
		"--cidr=" + cp.PodCIDR.String(),
		"--node-ip=127.0.0.1",
	}
	cp.kwok, err = startChild(cp.Dir, "kwok", tools.Kwok, append(args, opts.KwokArgs...))
	if err != nil {
		return cp, err
	}
	if exited, _ := cp.kwok.exited(); exited {
		return cp, cp.kwok.failure(errors.New("kubetest: kwok exited at once"))
	}
	cp.Timings.Kwok = time.Since(t)
	cp.Timings.Total = time.Since(t0)
	return cp, nil
}

// credentials are the files kube-apiserver authenticates with.
type credentials struct {
	token                   string // the admin's bearer token
	tokenFile               string
	saKey, saPub            string // service-account signing pair
	servingCert, servingKey string
	caPEM                   []byte // what clients trust: the self-signed serving cert
}

// writeCredentials creates the admin token, the service-account key pair
// and a serving certificate for 127.0.0.1 in dir.
func writeCredentials(dir string) (*credentials, error) {
	c := &credentials{
		tokenFile:   filepath.Join(dir, "tokens.csv"),
		saKey:       filepath.Join(dir, "sa.key"),
		saPub:       filepath.Join(dir, "sa.pub"),
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servingKey:  filepath.Join(dir, "apiserver.key"),
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	c.token = hex.EncodeToString(raw[:])
	// token,user,uid,"groups": system:masters passes every RBAC check.
	tokens := c.token + `,admin,admin,"system:masters"` + "\n"

	// The apiserver insists on a service-account issuer and keys even with
	// the ServiceAccount admission plugin off.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("kubetest: service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kubetest: service-account key: %w", err)
	}

	// Our own serving cert rather than --cert-dir's: the client must trust
	// it before the apiserver has written anything.
	cert, certKey, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return nil, fmt.Errorf("kubetest: serving certificate: %w", err)
	}
	c.caPEM = cert

	for _, f := range []struct {
		path string
		data []byte
	}{
		{c.tokenFile, []byte(tokens)},
		{c.saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})},
		{c.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})},
		{c.servingCert, cert},
		{c.servingKey, certKey},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("kubetest: %w", err)
		}
	}
	return c, nil
}

// startAPIServer runs kube-apiserver until /readyz answers 200, then writes
// the kubeconfig and builds the clients. The port is picked free and then
// bound by the child, so another process can take it in between: a bind
// failure is retried on a new port.
func (cp *ControlPlane) startAPIServer(ctx context.Context, tools Tools, creds *credentials, extra []string) error {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		args := []string{
			"--etcd-servers=" + cp.EtcdEndpoint,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + filepath.Join(cp.Dir, "certs"),
			"--tls-cert-file=" + creds.servingCert,
			"--tls-private-key-file=" + creds.servingKey,
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + creds.saPub,
			"--service-account-signing-key-file=" + creds.saKey,
			"--service-cluster-ip-range=" + ServiceCIDR,
			"--token-auth-file=" + creds.tokenFile,
			"--authorization-mode=RBAC",
			// No controller-manager issues service-account tokens.
			"--disable-admission-plugins=ServiceAccount",
			// Required on loopback: the default reconciler refuses to publish
			// 127.0.0.1 as the kubernetes service's endpoint, and exits.
			"--endpoint-reconciler-type=none",
		}
		cp.URL = "https://127.0.0.1:" + strconv.Itoa(port)
		if cp.apiserver, err = startChild(cp.Dir, "kube-apiserver", tools.KubeAPIServer, append(args, extra...)); err != nil {
			return err
		}
		err = cp.waitReady(ctx, creds)
		if err == nil {
			break
		}
		if attempt < attempts && strings.Contains(fileTail(cp.apiserver.logPath), "address already in use") {
			if serr := cp.apiserver.stop(); serr != nil {
				return serr
			}
			// A fresh log, so the next attempt is judged by its own lines.
			_ = os.Remove(cp.apiserver.logPath)
			continue
		}
		return cp.apiserver.failure(err)
	}

	cp.Config = &rest.Config{
		Host:            cp.URL,
		BearerToken:     creds.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: creds.caPEM},
		// Tests create objects in bursts; client-go's 5 QPS would be the
		// bottleneck, not the apiserver.
		QPS:   200,
		Burst: 400,
	}
	client, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return fmt.Errorf("kubetest: clientset: %w", err)
	}
	cp.Client = client

	cp.KubeconfigPath = filepath.Join(cp.Dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: creds.caPEM}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: creds.token}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin"}
	kc.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*kc, cp.KubeconfigPath); err != nil {
		return fmt.Errorf("kubetest: kubeconfig: %w", err)
	}
	return nil
}

// waitReady polls /readyz until it answers 200, the process exits, or the
// timeout passes. Polling, because the apiserver has nothing to wait on.
func (cp *ControlPlane) waitReady(ctx context.Context, creds *credentials) error {
	ctx, cancel := context.WithTimeout(ctx, cp.timeout)
	defer cancel()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(creds.caPEM) {
		return errors.New("kubetest: serving certificate does not parse")
	}
	// A transport of its own, closed at the end: no idle connection (and
	// its goroutines) outlives the wait.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.URL+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+creds.token)
		if resp, err := client.Do(req); err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, lastLines(string(body), 10))
		}
		select {
		case <-cp.apiserver.done:
			return fmt.Errorf("kubetest: kube-apiserver exited before /readyz was ready: %v", cp.apiserver.err)
		case <-ctx.Done():
			return fmt.Errorf("kubetest: kube-apiserver /readyz not ready after %v (%v); last answer: %s", cp.timeout, context.Cause(ctx), last)
		case <-tick.C:
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("kubetest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Close stops kwok and kube-apiserver (SIGKILL to each process group, then
// wait), then etcd, and removes Dir if Start created it. It leaves no
// process or goroutine of the control plane behind. Later calls return the
// first call's result.
func (cp *ControlPlane) Close() error {
	cp.closeOnce.Do(func() {
		var errs []error
		// kwok first: killed after the apiserver, it would log connection
		// errors for nothing.
		for _, c := range []*child{cp.kwok, cp.apiserver} {
			if c != nil {
				errs = append(errs, c.stop())
			}
		}
		if cp.etcd != nil {
			// Close waits for etcd's goroutines; what it reports on Err
			// then is only its listeners closing.
			cp.etcd.Close()
		}
		if cp.removeDir {
			errs = append(errs, os.RemoveAll(cp.Dir))
		}
		cp.closeErr = errors.Join(errs...)
	})
	return cp.closeErr
}

// Pids returns the process ids of kube-apiserver and kwok (0 for one not
// started). Each is also the id of the process group it leads.
func (cp *ControlPlane) Pids() (apiserver, kwok int) {
	if cp.apiserver != nil {
		apiserver = cp.apiserver.pid()
	}
	if cp.kwok != nil {
		kwok = cp.kwok.pid()
	}
	return apiserver, kwok
}

// Logs returns the paths of the children's log files. Close removes them
// with Dir if Start created Dir.
func (cp *ControlPlane) Logs() (apiserver, kwok string) {
	return filepath.Join(cp.Dir, "kube-apiserver.log"), filepath.Join(cp.Dir, "kwok.log")
}
