package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMQTriggerSmoke(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, 100))
	assert.Contains(t, out.String(), "100 done")
	assert.Contains(t, out.String(), "0 dead-lettered")
}
