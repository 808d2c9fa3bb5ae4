package concurrency

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewSlotsLimits(t *testing.T) {
	tests := []struct {
		name  string
		mode  Mode
		limit int
		want  int
	}{
		{"shared", Shared, 10, 10},
		{"shared below one is raised to one", Shared, 0, 1},
		{"shared negative", Shared, -5, 1},
		{"shared above max is lowered", Shared, MaxLimit + 10, MaxLimit},
		{"exclusive ignores the limit", Exclusive, 10, 1},
		{"exclusive zero", Exclusive, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSlots(tt.mode, tt.limit)
			assert.Equal(t, tt.want, s.Limit())
			assert.Equal(t, 0, s.InFlight())
			assert.Equal(t, tt.want, s.Free())
			for range min(tt.want, 1000) {
				require.True(t, s.TryAcquire())
			}
			if tt.want <= 1000 {
				assert.False(t, s.TryAcquire(), "admitted beyond the limit")
				assert.Equal(t, 0, s.Free())
				assert.InDelta(t, 1.0, s.Utilization(), 1e-12)
			}
		})
	}
}

func TestSlotsAcquireRelease(t *testing.T) {
	s := NewSlots(Shared, 3)
	require.True(t, s.TryAcquire())
	require.True(t, s.TryAcquire())
	assert.Equal(t, 2, s.InFlight())
	assert.Equal(t, 1, s.Free())
	assert.InDelta(t, 2.0/3, s.Utilization(), 1e-12)
	s.Release()
	s.Release()
	assert.Equal(t, 0, s.InFlight())
	assert.Equal(t, 3, s.Free())
}

func TestSlotsReleaseWithoutAcquirePanics(t *testing.T) {
	s := NewSlots(Shared, 2)
	assert.PanicsWithValue(t, "concurrency: Slots.Release without a matching TryAcquire", s.Release)
	// The failed release changed nothing.
	assert.Equal(t, 0, s.InFlight())
	assert.Equal(t, 2, s.Limit())
	require.True(t, s.TryAcquire())
	s.Release()
	assert.Panics(t, s.Release)
}

func TestSlotsSetLimit(t *testing.T) {
	s := NewSlots(Shared, 4)
	for range 4 {
		require.True(t, s.TryAcquire())
	}
	s.SetLimit(2) // below the count in flight: holders keep their slots
	assert.Equal(t, 4, s.InFlight())
	assert.Equal(t, 0, s.Free())
	assert.InDelta(t, 2.0, s.Utilization(), 1e-12)
	assert.False(t, s.TryAcquire())
	s.Release()
	s.Release()
	assert.False(t, s.TryAcquire(), "2 in flight, limit 2")
	s.Release()
	assert.True(t, s.TryAcquire())

	s.SetLimit(0)
	assert.Equal(t, 1, s.Limit(), "clamped to 1")
	s.SetLimit(MaxLimit * 2)
	assert.Equal(t, MaxLimit, s.Limit())
}

func TestSlotsExclusiveKeepsLimitOne(t *testing.T) {
	s := NewSlots(Exclusive, 8)
	s.SetLimit(8)
	assert.Equal(t, 1, s.Limit(), "an exclusive instance serves one request at a time")
	require.True(t, s.TryAcquire())
	assert.False(t, s.TryAcquire())
}

func TestSlotsZeroValue(t *testing.T) {
	var s Slots
	assert.False(t, s.TryAcquire(), "the zero value admits nothing")
	assert.Equal(t, 0, s.Limit())
	assert.Equal(t, 0, s.Free())
	assert.InDelta(t, 1.0, s.Utilization(), 0, "no capacity reads as full, not NaN")
}

func TestSlotsIsOneCacheLine(t *testing.T) {
	assert.Equal(t, uintptr(cacheLine), unsafe.Sizeof(Slots{}))
}

func TestModeString(t *testing.T) {
	assert.Equal(t, "shared", Shared.String())
	assert.Equal(t, "exclusive", Exclusive.String())
	assert.Equal(t, "Mode(7)", Mode(7).String())
}

func TestFunctionLimit(t *testing.T) {
	l := NewFunctionLimit(2)
	require.NoError(t, l.Acquire())
	require.NoError(t, l.Acquire())
	err := l.Acquire()
	require.ErrorIs(t, err, ErrFunctionLimit)
	assert.Equal(t, 2, l.InFlight())
	l.Release()
	require.NoError(t, l.Acquire())

	l.SetLimit(0)
	assert.Equal(t, MaxLimit, l.Limit(), "0 means unlimited")
	for range 100 {
		require.NoError(t, l.Acquire())
	}
	assert.Equal(t, 102, l.InFlight())
	for range 102 {
		l.Release()
	}
	assert.Panics(t, l.Release)
	assert.Equal(t, MaxLimit, NewFunctionLimit(-1).Limit())
}

func TestSlotsCountsReadsBothAtOnce(t *testing.T) {
	s := NewSlots(Shared, 3)
	require.True(t, s.TryAcquire())
	n, l := s.Counts()
	assert.Equal(t, 1, n)
	assert.Equal(t, 3, l)
	s.SetLimit(7)
	n, l = s.Counts()
	assert.Equal(t, 1, n)
	assert.Equal(t, 7, l)
	s.Release()
}
