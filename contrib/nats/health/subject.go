package health

import (
	"fmt"
	"strings"
)

// Subjects names the NATS subjects of the protocol under one prefix:
//
//	<prefix>.node.<node>   a host's changes and heartbeats (one subject per
//	                       node, so that NATS permissions can let each host
//	                       publish on its own only)
//	<prefix>.sync          requests for every host's snapshot
//	<prefix>.sync.<node>   requests for one host's snapshot
//
// A node name becomes one subject token with [EncodeToken].
type Subjects struct {
	prefix string
}

// NewSubjects returns the subjects under prefix (empty: DefaultPrefix). It
// returns an error when prefix is not a valid subject of literal tokens.
func NewSubjects(prefix string) (Subjects, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n*>") || !printable(tok) {
			return Subjects{}, fmt.Errorf("health: invalid subject prefix %q", prefix)
		}
	}
	return Subjects{prefix: prefix}, nil
}

// Node returns the subject a host publishes on.
func (s Subjects) Node(node string) string { return s.prefix + ".node." + EncodeToken(node) }

// AllNodes returns the wildcard subject of every host's publications.
func (s Subjects) AllNodes() string { return s.prefix + ".node.*" }

// Sync returns the subject of snapshot requests to every host.
func (s Subjects) Sync() string { return s.prefix + ".sync" }

// SyncNode returns the subject of snapshot requests to one host.
func (s Subjects) SyncNode(node string) string { return s.prefix + ".sync." + EncodeToken(node) }

// NodeOf returns the node whose subject subj is, and false when subj is not
// a node subject of s.
func (s Subjects) NodeOf(subj string) (string, bool) {
	tok, ok := strings.CutPrefix(subj, s.prefix+".node.")
	if !ok || strings.Contains(tok, ".") {
		return "", false
	}
	node, err := DecodeToken(tok)
	return node, err == nil
}

// tokenByte reports whether c stands for itself in a subject token.
func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

const hexDigits = "0123456789ABCDEF"

// EncodeToken turns a name into one subject token: letters, digits, '-'
// and '_' stand for themselves, and every other byte (the '.' of a host
// name such as ip-10-0-0-1.ec2.internal, '*', '>', '%', spaces) becomes %XX.
// The encoding is injective, so no two nodes share a subject.
func EncodeToken(name string) string {
	n := 0
	for i := 0; i < len(name); i++ {
		if !tokenByte(name[i]) {
			n++
		}
	}
	if n == 0 {
		return name
	}
	var b strings.Builder
	b.Grow(len(name) + 2*n)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if tokenByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// DecodeToken inverts [EncodeToken]. It refuses a token that EncodeToken
// does not produce (a byte that should have been escaped, a lower-case or
// truncated escape, an escape of a byte that stands for itself), so that
// every name has exactly one token.
func DecodeToken(tok string) (string, error) {
	if tok == "" {
		return "", fmt.Errorf("health: empty subject token")
	}
	if !strings.Contains(tok, "%") {
		for i := 0; i < len(tok); i++ {
			if !tokenByte(tok[i]) {
				return "", fmt.Errorf("health: subject token %q: byte %q must be escaped", clip(tok), tok[i])
			}
		}
		return tok, nil
	}
	var b strings.Builder
	b.Grow(len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if tokenByte(c) {
			b.WriteByte(c)
			continue
		}
		if c != '%' || i+2 >= len(tok) {
			return "", fmt.Errorf("health: subject token %q: bad escape at %d", clip(tok), i)
		}
		hi, lo := strings.IndexByte(hexDigits, tok[i+1]), strings.IndexByte(hexDigits, tok[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("health: subject token %q: bad escape at %d", clip(tok), i)
		}
		d := byte(hi<<4 | lo)
		if tokenByte(d) {
			return "", fmt.Errorf("health: subject token %q: %q must not be escaped", clip(tok), d)
		}
		b.WriteByte(d)
		i += 2
	}
	return b.String(), nil
}
