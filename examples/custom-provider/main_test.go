package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCustomProviderSmoke(t *testing.T) {
	out, err := run(context.Background())
	require.NoError(t, err)
	assert.Contains(t, out, "200")
	assert.Contains(t, out, "from my own provider")
}
