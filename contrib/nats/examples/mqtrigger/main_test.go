package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// 300 orders: 3 poison ones (99, 199, 299) dead-lettered after 3
// deliveries, 30 (N % 10 == 3) retried once, the rest processed at once.
func TestMQTriggerSmoke(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, 300, ""))
	assert.Contains(t, out.String(), "published 300 orders")
	assert.Contains(t, out.String(), "297 processed, 36 retried, 3 dead-lettered (3 in ORDERS_DEAD)")
}
