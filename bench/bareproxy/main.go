// Command bareproxy is the "agent-like" hop of the benchmark suite's bare
// proxy chain: a plain httputil.ReverseProxy in its own process, in front of
// one function process, configured like the faasplane agent's connection
// handling (keep-alive, many idle connections, no proxy from the
// environment) and nothing else. The suite (go run ./bench) builds and
// starts it; it prints "BAREPROXY_LISTENING <addr>" once it listens and
// serves until SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ListeningPrefix starts the line that announces the listening address.
const ListeningPrefix = "BAREPROXY_LISTENING"

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	target := flag.String("target", "", "base URL of the upstream, e.g. http://127.0.0.1:8080")
	flag.Parse()
	if err := run(*listen, *target); err != nil {
		log.Fatal(err)
	}
}

func run(listen, target string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-target must be a base URL, got %q", target)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: NewProxy(u), ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("%s %s\n", ListeningPrefix, ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// NewProxy returns the bare reverse proxy to target: the transport has the
// same connection settings as the faasplane gateway's transport to agents.
func NewProxy(target *url.URL) *httputil.ReverseProxy {
	p := httputil.NewSingleHostReverseProxy(target)
	p.Transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return p
}
