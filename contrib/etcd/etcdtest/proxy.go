package etcdtest

import (
	"io"
	"net"
	"sync"
)

// proxy forwards the TCP connections of the server's stable client address
// to etcd's own listener, which moves with every start. Cutting it closes
// every connection at once, as a crashed server or a partition would: the
// clients see their connections reset, and etcd sees its clients go (so
// that it stops at once instead of waiting for their streams). While cut it
// accepts connections and closes them, keeping the address its own.
type proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	target string // etcd's address; "" while cut
	conns  map[net.Conn]struct{}
	closed bool
}

func newProxy() (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.serve)
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		target, closed := p.target, p.closed
		if target == "" || closed {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.forward(c, target)
	}
}

// forward pipes c to target until either side ends or the proxy is cut.
func (p *proxy) forward(c net.Conn, target string) {
	defer p.wg.Done()
	defer p.drop(c)
	u, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer p.drop(u)
	p.mu.Lock()
	if p.target != target || p.closed {
		p.mu.Unlock() // cut while dialing
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	// One direction ended: close both, which ends the other.
	p.drop(c)
	p.drop(u)
	<-done
}

func (p *proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// setTarget forwards new connections to target; "" cuts the proxy: every
// connection is closed and new ones are refused.
func (p *proxy) setTarget(target string) {
	p.mu.Lock()
	p.target = target
	var cut []net.Conn
	if target == "" {
		for c := range p.conns {
			cut = append(cut, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		_ = c.Close()
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.setTarget("")
	_ = p.ln.Close()
	p.wg.Wait()
}
