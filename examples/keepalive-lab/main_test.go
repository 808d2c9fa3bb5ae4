package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKeepAliveLabSmoke runs the lab on four hours of the samples with a
// policy of each kind: a table per trace and a well-formed chart.
func TestKeepAliveLabSmoke(t *testing.T) {
	var out, svg bytes.Buffer
	require.NoError(t, run(&out, &svg, true))
	text := out.String()
	t.Logf("\n%s", text)
	for _, want := range []string{"Azure 2019 sample (4h0m0s)", "Azure 2021 sample", "fixed keep-alive 10m0s", "hybrid histogram range 4h0m0s", "KPA (10 min) KPA"} {
		assert.Contains(t, text, want)
	}
	assert.Equal(t, 6, strings.Count(text, "policy\n"), "every run decided by its policy, not a limit")
	dec := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	assert.Contains(t, svg.String(), "hybrid histogram")
}
