package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQuickstartSmoke runs the README's main command at a reduced scale:
// every phase must behave as the demo claims (scale-up, shedding, scale to
// zero, cold start on return) and no request may fail unexpectedly.
func TestQuickstartSmoke(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), &out, options{scale: 0.4})
	t.Log("\n" + out.String())
	require.NoError(t, err)
	s := out.String()
	for _, want := range []string{"phase 1/5", "phase 5/5", "cold starts:", "OK: all phases behaved as expected"} {
		assert.Contains(t, s, want)
	}
	assert.True(t, strings.Contains(s, "hello") && strings.Contains(s, "sleep"))
	// The Python and Node.js hellos were cold-started (hot-loaded) twice,
	// and answered every request.
	for _, fn := range []string{"hello-py", "hello-node"} {
		assert.Regexp(t, `(?m)^\s+`+fn+`\s+20\s+20\s+2\s`, s, "%s: 20 requests, 20 ok, 2 cold starts", fn)
	}
}

func TestQuickstartRejectsBadScale(t *testing.T) {
	assert.Error(t, run(context.Background(), &bytes.Buffer{}, options{scale: 0}))
}
