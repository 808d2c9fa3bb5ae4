package warmpool

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
)

func TestHTTPProber(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    error // nil: success; ErrNotIdle; errAny: some other error
	}{
		{"generic pod", func(w http.ResponseWriter, r *http.Request) {
			assert.Equal(t, lifecycle.PathPing, r.URL.Path)
			assert.True(t, wire.NewTokenMatcher(probeToken).Match(r), "the probe presents the pod's token")
			wire.WriteError(w, "", 0, lifecycle.CodeNoFunction, "no function loaded")
		}, nil},
		{"function loaded", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"function_id":"f","state":"ready"}`))
		}, ErrNotIdle},
		{"404 without the code (a proxy)", func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, errAny},
		{"500", func(w http.ResponseWriter, r *http.Request) {
			wire.WriteError(w, "", 0, lifecycle.CodeInternal, "boom")
		}, errAny},
		{"endless body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(lifecycle.HeaderErrorCode, string(lifecycle.CodeNoFunction))
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			p := &HTTPProber{} // its own client; goleak checks that closing it leaves nothing
			defer p.CloseIdleConnections()
			err := p.Probe(context.Background(), Pod{ID: "p", Addr: "192.0.2.1:1", Control: lifecycle.Control{Addr: srv.Listener.Addr().String(), Token: probeToken}})
			switch tt.want {
			case nil:
				require.NoError(t, err)
			case errAny:
				require.Error(t, err)
				require.NotErrorIs(t, err, ErrNotIdle)
			default:
				require.ErrorIs(t, err, tt.want)
			}
		})
	}
}

var errAny = &struct{ error }{}

const probeToken = "probe-token-0123456789"

func TestHTTPProberGarbageAndNoAgent(t *testing.T) {
	// An "agent" that answers garbage instead of HTTP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("\x00\x01garbage\r\n\r\n"))
			c.Close()
		}
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	p := &HTTPProber{Client: client, Timeout: 5 * time.Second}
	ctl := func(addr string) lifecycle.Control { return lifecycle.Control{Addr: addr, Token: probeToken} }
	require.Error(t, p.Probe(context.Background(), Pod{ID: "g", Control: ctl(ln.Addr().String())}))
	addr := ln.Addr().String()
	ln.Close()
	<-done
	// Nothing listens any more.
	require.Error(t, p.Probe(context.Background(), Pod{ID: "gone", Control: ctl(addr)}))
	require.Error(t, p.Probe(context.Background(), Pod{ID: "bad", Control: ctl("%%")}))
}
