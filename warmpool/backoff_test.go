package warmpool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		failures int
		r        float64
		want     time.Duration
	}{
		{0, 0.5, 0},
		{1, 0, 50 * time.Millisecond},
		{1, 0.5, 75 * time.Millisecond},
		{1, 1, 100 * time.Millisecond},
		{2, 0, 100 * time.Millisecond},
		{3, 1, 400 * time.Millisecond},
		{4, 0, 400 * time.Millisecond},
		{5, 0, 500 * time.Millisecond}, // 1.6 s nominal, capped to 1 s
		{5, 1, time.Second},
		{1000, 0.5, 750 * time.Millisecond}, // no overflow
		{1, -3, 50 * time.Millisecond},      // r clamped
		{1, 7, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, b.Delay(tt.failures, tt.r), "failures=%d r=%v", tt.failures, tt.r)
	}
}

func TestBackoffDefaultsAndValidation(t *testing.T) {
	b, err := Backoff{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, Backoff{Base: 200 * time.Millisecond, Max: 30 * time.Second}, b)
	_, err = Backoff{Base: time.Second, Max: time.Millisecond}.withDefaults()
	require.Error(t, err)
	_, err = Backoff{Base: -time.Second}.withDefaults()
	require.Error(t, err)
}
