package lifecycle

import (
	"crypto/rand"
	"encoding/base64"
	"log/slog"
)

// Control addresses the control protocol of one pod's agent: the host:port
// of its control listener and the pod's control token, the secret that
// every control call (load, initialize, ping, stats, watch) presents.
//
// The agent serves invocations and control on two listeners. Everything
// that reaches the invocation listener, /v1/... paths included, goes to the
// function; only the control listener answers the protocol, and only to
// callers that present the token. The pod provider creates the token with
// the pod and hands it to the agent out of band (a file, the environment,
// its standard input), never through the gateway; the dataplane keeps it in
// memory. String and LogValue show the address only, so a Control can be
// logged.
type Control struct {
	// Addr is the host:port of the agent's control listener.
	Addr string
	// Token is the pod's control token (see [NewControlToken]).
	Token string
}

// String returns the address; the token is never printed.
func (c Control) String() string { return c.Addr }

// LogValue logs the address; the token is never logged.
func (c Control) LogValue() slog.Value { return slog.StringValue(c.Addr) }

// Bounds of a control token, checked by [ValidControlToken].
const (
	MinControlTokenLen = 16
	MaxControlTokenLen = 256
)

// NewControlToken returns a new random control token: 32 bytes from
// crypto/rand, base64url-encoded (43 characters). Pod providers call it once
// per pod.
func NewControlToken() string {
	// rand.Text is base32 of 26 random characters (130 bits); a token of 32
	// bytes leaves no doubt about its strength.
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than returning short reads)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidControlToken reports whether t can serve as a control token: 16 to
// 256 bytes of printable ASCII without spaces.
func ValidControlToken(t string) bool {
	if len(t) < MinControlTokenLen || len(t) > MaxControlTokenLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// authScheme is the scheme of the Authorization header of control calls.
const authScheme = "Bearer "
