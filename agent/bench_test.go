package agent

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// benchClient returns an HTTP client with enough idle connections for the
// parallel benchmarks.
func benchClient() (*http.Client, *http.Transport) {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute, DisableCompression: true}
	return &http.Client{Transport: tr}, tr
}

func benchGet(b *testing.B, c *http.Client, url, functionID string) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set(lifecycle.HeaderFunctionID, functionID)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkProxy measures one small GET to the hello function three ways:
// directly, through a bare httputil.ReverseProxy, and through the agent.
// The serial runs report the latency's median and 99th percentile; the
// parallel runs report throughput with 16 concurrent clients. The agent's
// added latency is agent p50 minus direct p50, to compare with the bare
// proxy's.
func BenchmarkProxy(b *testing.B) {
	h := newHarness(b, nil)
	h.loadReady("hello", "hello", helloManifest, func(r *lifecycle.LoadRequest) { r.Limits.Concurrency = 64 })
	fnAddr := h.agent.Status().Addr

	target, _ := url.Parse("http://" + fnAddr)
	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: bare}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	targets := []struct{ name, url string }{
		{"direct", "http://" + fnAddr + "/"},
		{"bare-proxy", "http://" + ln.Addr().String() + "/"},
		{"agent", "http://" + h.addr + "/"},
	}
	for _, tg := range targets {
		b.Run("serial/"+tg.name, func(b *testing.B) {
			c, tr := benchClient()
			defer tr.CloseIdleConnections()
			benchGet(b, c, tg.url, "hello") // warm the connection
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				benchGet(b, c, tg.url, "hello")
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			reportQuantiles(b, lat)
		})
	}
	// The three targets in turn, request by request, so that the noise of
	// a shared machine hits them alike: the fairest comparison of the
	// added latencies. added-ratio is (agent p50 − direct p50) / (bare
	// proxy p50 − direct p50); the target is ≤ 1.3.
	b.Run("interleaved", func(b *testing.B) {
		c, tr := benchClient()
		defer tr.CloseIdleConnections()
		lat := make([][]time.Duration, len(targets))
		for i, tg := range targets {
			benchGet(b, c, tg.url, "hello")
			lat[i] = make([]time.Duration, 0, b.N)
		}
		b.ResetTimer()
		for n := 0; b.Loop(); n++ {
			for j := range targets {
				i := (n + j) % len(targets)
				start := time.Now()
				benchGet(b, c, targets[i].url, "hello")
				lat[i] = append(lat[i], time.Since(start))
			}
		}
		b.StopTimer()
		p50 := make([]float64, len(targets))
		for i, tg := range targets {
			slices.Sort(lat[i])
			p50[i] = float64(lat[i][len(lat[i])/2].Microseconds())
			b.ReportMetric(p50[i], tg.name+"-p50-µs")
		}
		b.ReportMetric((p50[2]-p50[0])/(p50[1]-p50[0]), "added-ratio")
	})
	for _, tg := range targets {
		b.Run("parallel/"+tg.name, func(b *testing.B) {
			c, tr := benchClient()
			defer tr.CloseIdleConnections()
			b.SetParallelism(8) // 16 clients on 2 cores
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchGet(b, c, tg.url, "hello")
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// BenchmarkProxyBufferPool is one Get and Put of the proxy's copy buffer:
// no allocation once the pool holds a buffer.
func BenchmarkProxyBufferPool(b *testing.B) {
	proxyBuffers.Put(proxyBuffers.Get())
	b.ReportAllocs()
	for b.Loop() {
		buf := proxyBuffers.Get()
		buf[0] = 1
		proxyBuffers.Put(buf)
	}
}

func reportQuantiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// BenchmarkColdStart measures the agent's share of a cold start on a warm
// pod: POST /v1/load (code from the origin directory, or from the node's
// tree cache) and POST /v1/initialize until the function is ready, then an
// unload. Each iteration starts a real process.
func BenchmarkColdStart(b *testing.B) {
	bin, err := os.ReadFile(filepath.Join(binDir, "hello"))
	if err != nil {
		b.Fatal(err)
	}
	zipStore := func() []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, f := range []struct {
			name, body string
			mode       os.FileMode
		}{{"faas.json", helloManifest, 0o644}, {"hello", string(bin), 0o755}} {
			w, _ := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Store, ExternalAttrs: uint32(f.mode) << 16, CreatorVersion: 3 << 8})
			_, _ = w.Write([]byte(f.body))
		}
		_ = zw.Close()
		return buf.Bytes()
	}()
	cases := []struct {
		name  string
		pkg   []byte
		trees bool
	}{
		{"tar.gz", tarGzLevel(b, gzip.DefaultCompression, tarEntry{name: "faas.json", body: helloManifest},
			tarEntry{name: "hello", body: string(bin), mode: 0o755}), false},
		{"zip-store", zipStore, false},
		{"tree-cache-hit", binPackage(b, "hello", helloManifest), true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			treeDir := ""
			if c.trees {
				treeDir = b.TempDir()
			}
			h := newHarness(b, func(cfg *Config) { cfg.TreeDir = treeDir })
			ref := h.publish("p", c.pkg)
			var sum lifecycle.Timings
			lat := make([]time.Duration, 0, b.N)
			if c.trees { // fill the cache once
				coldStartOnce(b, h, ref, &sum)
				sum = lifecycle.Timings{}
			}
			b.ResetTimer()
			for b.Loop() {
				lat = append(lat, coldStartOnce(b, h, ref, &sum))
			}
			b.StopTimer()
			reportQuantiles(b, lat)
			n := float64(len(lat))
			b.ReportMetric(sum.FetchMillis/n, "fetch-ms")
			b.ReportMetric(sum.UnpackMillis/n, "unpack-ms")
			b.ReportMetric(sum.StartMillis/n, "start-ms")
		})
	}
}

// coldStartOnce loads and initializes the function on h's agent, timing
// both, then unloads it (untimed) so that the next iteration finds a
// generic pod again.
func coldStartOnce(b *testing.B, h *harness, ref lifecycle.CodeRef, sum *lifecycle.Timings) time.Duration {
	ctx := context.Background()
	start := time.Now()
	lr, err := h.client.Load(ctx, h.ctl, lifecycle.LoadRequest{FunctionID: "hello", Code: ref, Runtime: "go"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := h.client.Initialize(ctx, h.ctl, lifecycle.InitializeRequest{FunctionID: "hello"}); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	sum.FetchMillis += lr.Timings.FetchMillis
	sum.UnpackMillis += lr.Timings.UnpackMillis
	sum.StartMillis += lr.Timings.StartMillis
	h.agent.Unload()
	return d
}
