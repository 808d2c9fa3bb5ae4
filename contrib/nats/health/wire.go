package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/faasplane/faas/lifecycle"
)

// WireVersion is the version of the messages this package sends; Decode
// refuses any other.
const WireVersion = 1

// DefaultPrefix is the first tokens of every subject of the protocol.
const DefaultPrefix = "faas.health"

// Bounds of the messages, checked by Decode.
const (
	// MaxMessageBytes bounds an encoded message (NATS's default
	// max_payload is 1 MiB).
	MaxMessageBytes = 1 << 20
	// MaxPods bounds the pod entries of one message.
	MaxPods = 8192
	// MaxNameLen bounds a node or pod name (a DNS subdomain's length,
	// what Kubernetes allows for both).
	MaxNameLen = 253
	// MaxReasonLen bounds a reason; longer ones are cut by the publisher.
	MaxReasonLen = 256
)

// State is a host's verdict on one pod.
type State string

// The states of a pod in a report.
const (
	// StateUp: the pod's agent answers its ping for a Ready function.
	StateUp State = "up"
	// StateDown: the pod's agent failed its pings (timeouts, refused
	// connections, errors) or stopped being ready; the instance leaves the
	// routes until its host reports it up again.
	StateDown State = "down"
	// StateExited: the function process exited, or the pod is gone; the
	// instance is removed and replaced.
	StateExited State = "exited"
	// StateReassigned: the pod's agent serves another function now, or
	// none; the instance is removed.
	StateReassigned State = "reassigned"
)

// Valid reports whether s is one of the protocol's states.
func (s State) Valid() bool {
	switch s {
	case StateUp, StateDown, StateExited, StateReassigned:
		return true
	}
	return false
}

// Kind says what a [Message] carries.
type Kind string

// The kinds of messages.
const (
	// KindChange carries the pods whose verdict changed, as soon as it
	// changed.
	KindChange Kind = "change"
	// KindHeartbeat is sent every heartbeat interval and carries every pod
	// the host does not report up: a receiver that missed a change is
	// corrected within one interval, and one that hears nothing for a few
	// intervals knows the host's reports are stale.
	KindHeartbeat Kind = "heartbeat"
	// KindSnapshot is a heartbeat sent as the answer to a sync request,
	// to a dataplane that (re)subscribed and wants the current state now.
	KindSnapshot Kind = "snapshot"
)

// PodStatus is a host's verdict on one pod.
type PodStatus struct {
	// Pod is the pod's ID (warmpool.Pod.ID).
	Pod string `json:"pod"`
	// Function is the function the pod's agent last served, when known.
	Function string `json:"function,omitempty"`
	// State is the verdict.
	State State `json:"state"`
	// Reason says why, for logs and events.
	Reason string `json:"reason,omitempty"`
}

// Message is one publication of a host agent.
type Message struct {
	// Version is WireVersion.
	Version int `json:"v"`
	// Kind says what Pods holds.
	Kind Kind `json:"kind"`
	// Node is the publishing host.
	Node string `json:"node"`
	// Epoch names one run of the publisher: sequence numbers compare
	// within an epoch only, and a new epoch means the host restarted.
	Epoch string `json:"epoch"`
	// StartedUnixNano is when the run began (the publisher's clock): of
	// two epochs of one host, the later run's wins, so that a message of
	// an earlier run delivered late is ignored.
	StartedUnixNano int64 `json:"started_ns"`
	// Seq numbers the changes of an epoch from 1; a heartbeat or snapshot
	// carries the number of the latest change it includes.
	Seq uint64 `json:"seq"`
	// SentUnixNano is when the message was published (the publisher's
	// clock), for latency measurements.
	SentUnixNano int64 `json:"sent_ns"`
	// HeartbeatMillis is the publisher's heartbeat interval, from which
	// receivers judge its staleness.
	HeartbeatMillis int64 `json:"heartbeat_ms"`
	// Pods are the changed pods (KindChange) or every pod not up
	// (KindHeartbeat, KindSnapshot).
	Pods []PodStatus `json:"pods,omitempty"`
}

// ErrMalformed is wrapped by every error of Decode.
var ErrMalformed = errors.New("health: malformed message")

// Encode returns the JSON encoding of m, or an error when m would not pass
// Decode (so that a publisher never sends what its receivers refuse).
func Encode(m *Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("health: encode: %w", err)
	}
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes encoded, more than %d", ErrMalformed, len(b), MaxMessageBytes)
	}
	return b, nil
}

// Decode parses and validates a message from the wire: at most
// MaxMessageBytes of JSON, WireVersion, a known kind, a valid node name,
// at most MaxPods pods with valid names, states, function IDs and reasons,
// and no unknown fields. It never panics, whatever data holds.
func Decode(data []byte) (Message, error) {
	var m Message
	if len(data) > MaxMessageBytes {
		return m, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(data), MaxMessageBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() {
		return Message{}, fmt.Errorf("%w: data after the message", ErrMalformed)
	}
	if err := m.validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

func (m *Message) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	switch {
	case m.Version != WireVersion:
		return bad("version %d, want %d", m.Version, WireVersion)
	case m.Kind != KindChange && m.Kind != KindHeartbeat && m.Kind != KindSnapshot:
		return bad("unknown kind %q", clip(string(m.Kind)))
	case !ValidName(m.Node):
		return bad("invalid node %q", clip(m.Node))
	case m.Epoch == "" || len(m.Epoch) > 64 || !printable(m.Epoch):
		return bad("invalid epoch %q", clip(m.Epoch))
	case m.Kind == KindChange && m.Seq == 0:
		return bad("a change needs a sequence number")
	case m.HeartbeatMillis < 0 || m.StartedUnixNano < 0:
		return bad("negative heartbeat interval or start time")
	case len(m.Pods) > MaxPods:
		return bad("%d pods, more than %d", len(m.Pods), MaxPods)
	}
	for i := range m.Pods {
		p := &m.Pods[i]
		switch {
		case !ValidName(p.Pod):
			return bad("pod %d: invalid name %q", i, clip(p.Pod))
		case !p.State.Valid():
			return bad("pod %s: unknown state %q", p.Pod, clip(string(p.State)))
		case m.Kind != KindChange && p.State == StateUp:
			return bad("pod %s: a %s lists only pods that are not up", p.Pod, m.Kind)
		case len(p.Reason) > MaxReasonLen || !utf8.ValidString(p.Reason) || strings.ContainsAny(p.Reason, "\r\n"):
			return bad("pod %s: reason longer than %d bytes or not one line of UTF-8", p.Pod, MaxReasonLen)
		}
		if p.Function != "" {
			if err := lifecycle.ValidFunctionID(p.Function); err != nil {
				return bad("pod %s: %v", p.Pod, err)
			}
		}
	}
	return nil
}

// ValidName reports whether s can name a node or a pod: 1 to MaxNameLen
// bytes of printable ASCII without spaces.
func ValidName(s string) bool {
	return s != "" && len(s) <= MaxNameLen && printable(s)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// clip shortens a value quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// cutReason makes r a valid reason: one line, at most MaxReasonLen bytes of
// UTF-8.
func cutReason(r string) string {
	r = strings.ToValidUTF8(r, "?")
	r = strings.Map(func(c rune) rune {
		if c == '\r' || c == '\n' {
			return ' '
		}
		return c
	}, r)
	if len(r) <= MaxReasonLen {
		return r
	}
	cut := MaxReasonLen - len("…")
	for cut > 0 && !utf8.RuneStart(r[cut]) {
		cut--
	}
	return r[:cut] + "…"
}
