package health

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validMessage() Message {
	return Message{Version: WireVersion, Kind: KindChange, Node: "node-a", Epoch: "E1", Seq: 1, HeartbeatMillis: 1000,
		Pods: []PodStatus{{Pod: "p1", Function: "f", State: StateDown, Reason: "ping timed out"}}}
}

func TestDecode(t *testing.T) {
	enc := func(edit func(m *Message)) string {
		m := validMessage()
		edit(&m)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return string(b)
	}
	for _, tc := range []struct {
		name, data string
		err        string // "" when valid
	}{
		{"valid change", enc(func(*Message) {}), ""},
		{"valid heartbeat", enc(func(m *Message) { m.Kind, m.Seq = KindHeartbeat, 0 }), ""},
		{"valid empty snapshot", enc(func(m *Message) { m.Kind, m.Pods = KindSnapshot, nil }), ""},
		{"up in a change", enc(func(m *Message) { m.Pods[0].State = StateUp }), ""},
		{"up in a heartbeat", enc(func(m *Message) { m.Kind, m.Pods[0].State = KindHeartbeat, StateUp }), "only pods that are not up"},
		{"other version", enc(func(m *Message) { m.Version = 2 }), "version 2"},
		{"unknown kind", enc(func(m *Message) { m.Kind = "gossip" }), "unknown kind"},
		{"empty node", enc(func(m *Message) { m.Node = "" }), "invalid node"},
		{"node with a space", enc(func(m *Message) { m.Node = "a b" }), "invalid node"},
		{"node too long", enc(func(m *Message) { m.Node = strings.Repeat("n", MaxNameLen+1) }), "invalid node"},
		{"no epoch", enc(func(m *Message) { m.Epoch = "" }), "invalid epoch"},
		{"change without sequence", enc(func(m *Message) { m.Seq = 0 }), "sequence number"},
		{"negative heartbeat", enc(func(m *Message) { m.HeartbeatMillis = -1 }), "negative heartbeat"},
		{"empty pod", enc(func(m *Message) { m.Pods[0].Pod = "" }), "invalid name"},
		{"unknown state", enc(func(m *Message) { m.Pods[0].State = "sleepy" }), "unknown state"},
		{"bad function", enc(func(m *Message) { m.Pods[0].Function = "a b" }), "pod p1"},
		{"two-line reason", enc(func(m *Message) { m.Pods[0].Reason = "a\nb" }), "one line"},
		{"long reason", enc(func(m *Message) { m.Pods[0].Reason = strings.Repeat("r", MaxReasonLen+1) }), "one line"},
		{"too many pods", enc(func(m *Message) { m.Pods = make([]PodStatus, MaxPods+1) }), "more than"},
		{"unknown field", `{"v":1,"kind":"heartbeat","node":"n","epoch":"e","extra":1}`, "unknown field"},
		{"trailing data", enc(func(*Message) {}) + "{}", "data after"},
		{"not JSON", "down", "invalid character"},
		{"empty", "", "EOF"},
		{"too large", `{"v":1,"kind":"heartbeat","node":"n","epoch":"e","pods":[]}` + strings.Repeat(" ", MaxMessageBytes), "bytes, more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.data))
			if tc.err == "" {
				require.NoError(t, err)
				b, err := Encode(&m)
				require.NoError(t, err, "what Decode accepts, Encode sends")
				again, err := Decode(b)
				require.NoError(t, err)
				assert.Equal(t, m, again)
				return
			}
			require.ErrorIs(t, err, ErrMalformed)
			assert.ErrorContains(t, err, tc.err)
		})
	}
}

func TestEncodeRefusesWhatDecodeRefuses(t *testing.T) {
	m := validMessage()
	m.Node = "a b"
	_, err := Encode(&m)
	require.ErrorIs(t, err, ErrMalformed)
}

func TestCutReason(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ok", "ok"},
		{"two\r\nlines", "two  lines"},
		{"bad \xff byte", "bad ? byte"},
		{strings.Repeat("é", MaxReasonLen), strings.Repeat("é", (MaxReasonLen-len("…"))/2) + "…"},
	} {
		got := cutReason(tc.in)
		assert.Equal(t, tc.want, got)
		assert.LessOrEqual(t, len(got), MaxReasonLen)
	}
}

func TestTokens(t *testing.T) {
	for _, tc := range []struct{ name, token string }{
		{"node-a", "node-a"},
		{"ip-10-0-0-1.ec2.internal", "ip-10-0-0-1%2Eec2%2Einternal"},
		{"a*b>c", "a%2Ab%3Ec"},
		{"50%", "50%25"},
		{"under_score", "under_score"},
	} {
		assert.Equal(t, tc.token, EncodeToken(tc.name), tc.name)
		back, err := DecodeToken(tc.token)
		require.NoError(t, err)
		assert.Equal(t, tc.name, back)
	}
	for _, bad := range []string{"", "a.b", "a*", "%2", "%zz", "%2e", "%41", "a b", "%"} {
		_, err := DecodeToken(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// Property: every name has one token, a literal subject token, that
// decodes back to it; distinct names get distinct tokens.
func TestTokensProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := "aZ09-_.%*> \x00\xff/é"
	seen := map[string]string{}
	for range 5000 {
		var b strings.Builder
		for range 1 + rng.IntN(12) {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		name := b.String()
		tok := EncodeToken(name)
		require.NotContains(t, tok, ".")
		require.False(t, strings.ContainsAny(tok, "*> \t\r\n"), "token %q", tok)
		back, err := DecodeToken(tok)
		require.NoError(t, err)
		require.Equal(t, name, back)
		if other, ok := seen[tok]; ok {
			require.Equal(t, other, name, "two names share token %q", tok)
		}
		seen[tok] = name
	}
}

func TestSubjects(t *testing.T) {
	s, err := NewSubjects("")
	require.NoError(t, err)
	assert.Equal(t, "faas.health.node.ip-1%2Eec2", s.Node("ip-1.ec2"))
	assert.Equal(t, "faas.health.node.*", s.AllNodes())
	assert.Equal(t, "faas.health.sync", s.Sync())
	assert.Equal(t, "faas.health.sync.n1", s.SyncNode("n1"))
	node, ok := s.NodeOf(s.Node("ip-1.ec2"))
	assert.True(t, ok)
	assert.Equal(t, "ip-1.ec2", node)
	for _, subj := range []string{"faas.health.node.a.b", "faas.health.sync", "other.node.a", "faas.health.node.%zz"} {
		_, ok := s.NodeOf(subj)
		assert.False(t, ok, subj)
	}
	for _, bad := range []string{"a..b", "a.*", "a.>", "a b", ".a"} {
		_, err := NewSubjects(bad)
		assert.Error(t, err, bad)
	}
}

// FuzzDecode: Decode never panics, and what it accepts survives a round
// trip through Encode.
func FuzzDecode(f *testing.F) {
	m := validMessage()
	b, _ := json.Marshal(m)
	f.Add(b)
	f.Add([]byte(`{"v":1,"kind":"heartbeat","node":"n","epoch":"e","seq":3,"pods":[{"pod":"p","state":"exited"}]}`))
	f.Add([]byte(`{"v":1,"kind":"snapshot","node":"n","epoch":"e"}`))
	f.Add([]byte(`{"v":1,"kind":"change","node":"n","epoch":"e","seq":1,"pods":[{"pod":"p","state":"up","reason":"\u00e9"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		b, err := Encode(&m)
		if err != nil {
			t.Fatalf("Decode accepted what Encode refuses: %v", err)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if len(again.Pods) != len(m.Pods) || again.Node != m.Node || again.Seq != m.Seq {
			t.Fatalf("round trip changed the message: %+v → %+v", m, again)
		}
	})
}

// FuzzDecodeToken: DecodeToken never panics, and accepts exactly the
// tokens EncodeToken produces.
func FuzzDecodeToken(f *testing.F) {
	for _, s := range []string{"node-a", "ip-10-0-0-1%2Eec2", "%25", "%2e", "%", "a.b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		name, err := DecodeToken(tok)
		if err != nil {
			return
		}
		if EncodeToken(name) != tok {
			t.Fatalf("DecodeToken(%q) = %q, which encodes to %q", tok, name, EncodeToken(name))
		}
	})
}
