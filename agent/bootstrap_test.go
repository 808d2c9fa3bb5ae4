package agent

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readEvents runs a bootstrap's event reader over input and returns what
// it made of it.
func readEvents(t testing.TB, input string) (ready bool, info bootEvent, result *bootEvent) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	b := &bootstrapProc{proc: &process{pid: 1}, events: r, log: slog.New(slog.DiscardHandler),
		ready: make(chan struct{}), result: make(chan bootEvent, 1)}
	b.reader.Add(1)
	go b.read()
	go func() { _, _ = w.WriteString(input); _ = w.Close() }()
	b.reader.Wait()
	_ = r.Close()
	select {
	case <-b.ready:
		ready, info = true, b.info
	default:
	}
	select {
	case ev := <-b.result:
		result = &ev
	default:
	}
	return ready, info, result
}

func TestBootstrapEvents(t *testing.T) {
	ready, info, res := readEvents(t, `not json
{"type":"ready","runtime":"ruby","protocol":"h2c","pid":7}
{"type":"ready","runtime":"twice"}
{"type":"progress","pct":50}
{"type":"loaded","ms":1.5}
{"type":"load_failed","error":"late"}
`)
	require.True(t, ready)
	require.Equal(t, "ruby", info.Runtime, "the first ready counts")
	require.Equal(t, "h2c", info.protocolOf())
	require.NotNil(t, res)
	require.Equal(t, "loaded", res.Type, "only the answer to the one load counts")
	require.Equal(t, 1.5, res.Millis)

	ready, _, res = readEvents(t, `{"type":"ready","protocol":"spdy"}`+"\n")
	require.True(t, ready)
	require.Nil(t, res)
	_, info, _ = readEvents(t, `{"type":"ready","protocol":"spdy"}`+"\n")
	require.Empty(t, info.protocolOf(), "an unknown protocol is no declaration")
}

func FuzzBootstrapEvents(f *testing.F) {
	f.Add(`{"type":"ready"}` + "\n" + `{"type":"loaded"}` + "\n")
	f.Add(`{"type":"load_failed","error":"x","detail":"` + strings.Repeat("y", 100) + `"}`)
	f.Add("\x00\xff{]\n")
	f.Fuzz(func(t *testing.T, input string) {
		ready, _, res := readEvents(t, input)
		if res != nil {
			require.Contains(t, []string{"loaded", "load_failed"}, res.Type)
		}
		if !strings.Contains(input, "ready") {
			require.False(t, ready)
		}
	})
}
