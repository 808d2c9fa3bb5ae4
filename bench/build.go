package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/internal/fnbuild"
	"github.com/faasplane/faas/pods/local"
)

const modulePath = "github.com/faasplane/faas"

// artifacts are the binaries the scenarios run, built once per run into a
// temporary directory.
type artifacts struct {
	dir string

	once                  sync.Once
	err                   error
	hello, sleep          string // function binaries
	agent, bareproxy      string
	helloPkg, helloPrefix []byte // the hello package; its shared gzip member
}

func (a *artifacts) build(ctx context.Context) error {
	a.once.Do(func() {
		var bins []string
		bins, a.err = fnbuild.BuildAll(ctx, filepath.Join(a.dir, "bin"), fnbuild.ExamplePackage("hello"), fnbuild.ExamplePackage("sleep"),
			modulePath+"/bench/bareproxy", local.AgentPackage)
		if a.err != nil {
			return
		}
		a.hello, a.sleep, a.bareproxy, a.agent = bins[0], bins[1], bins[2], bins[3]
		a.helloPrefix, a.err = gzipTarPrefix(a.hello, "hello")
		if a.err != nil {
			return
		}
		a.helloPkg, a.err = variant(a.helloPrefix, "hello", "")
	})
	return a.err
}

// gzipTarPrefix returns a gzip member holding the tar entry of the binary
// at bin (as ./name, executable), without the archive's end: variants of a
// package append a second member with their own faas.json and the end.
// gzip readers read concatenated members as one stream, so every variant is
// a valid .tar.gz whose bytes, and digest, differ only in the manifest.
func gzipTarPrefix(bin, name string) ([]byte, error) {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(exe)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(exe); err != nil {
		return nil, err
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	return gzipBytes(tb.Bytes())
}

// variant returns the package prefix + a member with faas.json (running
// ./name, with BENCH_VARIANT=tag in its environment when tag is set).
func variant(prefix []byte, name, tag string) ([]byte, error) {
	m := code.Manifest{Command: "./" + name}
	if tag != "" {
		m.Env = map[string]string{"BENCH_VARIANT": tag}
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: code.ManifestName, Mode: 0o644, Size: int64(len(mb)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(mb); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	suffix, err := gzipBytes(tb.Bytes())
	if err != nil {
		return nil, err
	}
	return append(prefix[:len(prefix):len(prefix)], suffix...), nil
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// origin serves code packages over HTTP on loopback, from memory. A
// package is a list of byte slices (shared prefixes are not copied).
type origin struct {
	mu   sync.Mutex
	pkgs map[string][][]byte
	srv  *http.Server
	url  string
}

func newOrigin() (*origin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &origin{pkgs: map[string][][]byte{}, url: "http://" + ln.Addr().String()}
	o.srv = &http.Server{Handler: o, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = o.srv.Serve(ln) }()
	return o, nil
}

func (o *origin) close() { _ = o.srv.Close() }

// put publishes parts under name and returns the package's reference.
func (o *origin) put(name string, parts ...[]byte) code.Ref {
	h := sha256.New()
	var size int64
	for _, p := range parts {
		h.Write(p)
		size += int64(len(p))
	}
	o.mu.Lock()
	o.pkgs[name] = parts
	o.mu.Unlock()
	return code.Ref{URI: o.url + "/" + name, Digest: code.DigestPrefix + hex.EncodeToString(h.Sum(nil)), Size: size}
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	parts, ok := o.pkgs[strings.TrimPrefix(r.URL.Path, "/")]
	o.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	readers := make([]io.Reader, len(parts))
	var size int64
	for i, p := range parts {
		readers[i] = bytes.NewReader(p)
		size += int64(len(p))
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Content-Type", "application/gzip")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, io.MultiReader(readers...))
}

// proc is a child process the suite started.
type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

// startFunction starts a function binary with PORT set, as an agent would,
// and returns once it accepts connections.
func startFunction(ctx context.Context, bin string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before listening", filepath.Base(bin))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond): // polling a port; nothing to wait on
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not listen on %s within 10 s", filepath.Base(bin), p.addr)
		}
	}
}

// startBareProxy starts the bare agent-like proxy in front of upstream.
func startBareProxy(ctx context.Context, bin, upstream string) (*proc, error) {
	cmd := exec.Command(bin, "-target", upstream)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "BAREPROXY_LISTENING "); ok {
				addr <- a
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.addr = <-addr:
		return p, nil
	case <-p.done:
		return nil, errors.New("bareproxy exited before listening")
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		p.stop()
		return nil, errors.New("bareproxy did not listen within 10 s")
	}
}

// stop kills the process group and waits for the process.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
