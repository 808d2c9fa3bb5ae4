package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQuickstartSmoke runs the README's main command at a reduced size.
func TestQuickstartSmoke(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, 20_000))
	s := out.String()
	assert.Contains(t, s, "every one of them from dp-c")
	assert.True(t, strings.HasSuffix(s, "OK\n"), s)
}

func TestQuickstartRejectsBadFlag(t *testing.T) {
	assert.Error(t, run(&bytes.Buffer{}, 0))
}
