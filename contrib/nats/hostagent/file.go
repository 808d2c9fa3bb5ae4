package hostagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// MaxPodsFileBytes bounds a pods file.
const MaxPodsFileBytes = 16 << 20

// ErrBadPodsFile is wrapped by every error of ParsePods.
var ErrBadPodsFile = errors.New("hostagent: bad pods file")

// FileLister lists the pods written in a JSON file (see [ParsePods]),
// reading it again on every List: the way a node daemon, or a test, tells
// the faas-hostagent command which pods run on its node, without the
// command depending on a particular orchestrator. The file holds the pods'
// control tokens, so List refuses one that its group or others may read.
type FileLister struct {
	// Path is the file's path.
	Path string
}

// List reads and parses the file.
func (f FileLister) List(context.Context) ([]warmpool.Pod, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s holds control tokens and is readable by others (mode %v); chmod 600 it", ErrBadPodsFile, f.Path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxPodsFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	return ParsePods(data)
}

// podsFile is the file's JSON form.
type podsFile struct {
	Pods []filePod `json:"pods"`
}

type filePod struct {
	ID      string            `json:"id"`
	Node    string            `json:"node"`
	Addr    string            `json:"addr,omitempty"`
	Control fileControl       `json:"control"`
	Runtime string            `json:"runtime,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

type fileControl struct {
	Addr  string `json:"addr"`
	Token string `json:"token"`
}

// ParsePods parses a pods file:
//
//	{"pods": [{"id": "pod-1", "node": "node-a", "addr": "10.0.0.5:8080",
//	           "control": {"addr": "10.0.0.5:8081", "token": "…"},
//	           "runtime": "go", "labels": {"k": "v"}}]}
//
// id and node are valid names (health.ValidName), unique ids; control.addr
// is a host:port and control.token a valid control token
// (lifecycle.ValidControlToken); addr, when set, is a host:port. Unknown
// fields are errors. The pods come back sorted by ID. It never panics,
// whatever data holds.
func ParsePods(data []byte) ([]warmpool.Pod, error) {
	if len(data) > MaxPodsFileBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBadPodsFile, MaxPodsFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f podsFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPodsFile, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the object", ErrBadPodsFile)
	}
	out := make([]warmpool.Pod, 0, len(f.Pods))
	seen := make(map[string]bool, len(f.Pods))
	for i, p := range f.Pods {
		bad := func(what string) error {
			return fmt.Errorf("%w: pod %d (%q): %s", ErrBadPodsFile, i, clip(p.ID), what)
		}
		switch {
		case !health.ValidName(p.ID):
			return nil, bad("invalid id")
		case seen[p.ID]:
			return nil, bad("duplicate id")
		case !health.ValidName(p.Node):
			return nil, bad("invalid node")
		case !hostPort(p.Control.Addr):
			return nil, bad("control.addr is not a host:port")
		case !lifecycle.ValidControlToken(p.Control.Token):
			return nil, bad(fmt.Sprintf("control.token must be %d to %d bytes of printable ASCII", lifecycle.MinControlTokenLen, lifecycle.MaxControlTokenLen))
		case p.Addr != "" && !hostPort(p.Addr):
			return nil, bad("addr is not a host:port")
		}
		seen[p.ID] = true
		out = append(out, warmpool.Pod{ID: p.ID, Node: p.Node, Addr: p.Addr, Runtime: p.Runtime, Labels: p.Labels,
			Control: lifecycle.Control{Addr: p.Control.Addr, Token: p.Control.Token}})
	}
	slices.SortFunc(out, func(a, b warmpool.Pod) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func hostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	return err == nil && host != "" && port != "" && !strings.ContainsAny(s, " \t\r\n/")
}

// WritePods writes pods to path as ParsePods reads them, with mode 0600,
// atomically (a temporary file renamed over path), so that a FileLister
// never reads half a file.
func WritePods(path string, pods []warmpool.Pod) error {
	f := podsFile{Pods: make([]filePod, 0, len(pods))}
	for _, p := range pods {
		f.Pods = append(f.Pods, filePod{ID: p.ID, Node: p.Node, Addr: p.Addr, Runtime: p.Runtime, Labels: p.Labels,
			Control: fileControl{Addr: p.Control.Addr, Token: p.Control.Token}})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("hostagent: %w", err)
	}
	if _, err := ParsePods(data); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pods-*.json")
	if err != nil {
		return fmt.Errorf("hostagent: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("hostagent: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("hostagent: %w", err)
	}
	// CreateTemp's mode is 0600 already.
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("hostagent: %w", err)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
