package faastest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClockFiresTimersInDeadlineOrder(t *testing.T) {
	c := NewClock(time.Time{})
	require.Equal(t, Epoch, c.Now())
	late, early, mid := c.After(3*time.Second), c.After(time.Second), c.After(2*time.Second)
	assert.Equal(t, 3, c.Waiters())

	c.Advance(1500 * time.Millisecond)
	assert.Equal(t, Epoch.Add(time.Second), <-early, "a timer receives its deadline")
	select {
	case <-mid:
		t.Fatal("fired early")
	default:
	}
	c.Advance(10 * time.Second)
	assert.Equal(t, Epoch.Add(2*time.Second), <-mid)
	assert.Equal(t, Epoch.Add(3*time.Second), <-late)
	assert.Equal(t, Epoch.Add(11500*time.Millisecond), c.Now())
	assert.Zero(t, c.Waiters())

	c.Set(Epoch) // never back
	assert.Equal(t, Epoch.Add(11500*time.Millisecond), c.Now())
	c.Advance(-time.Second)
	assert.Equal(t, Epoch.Add(11500*time.Millisecond), c.Now())
}

func TestClockTickerKeepsOneUnreadTick(t *testing.T) {
	c := NewClock(Epoch)
	tk := c.NewTicker(time.Second)
	c.Advance(3500 * time.Millisecond)
	assert.Equal(t, Epoch.Add(time.Second), <-tk.C(), "later ticks were dropped, as with time.Ticker")
	select {
	case <-tk.C():
		t.Fatal("more than one tick held")
	default:
	}
	c.Advance(time.Second)
	assert.Equal(t, Epoch.Add(4*time.Second), <-tk.C())
	tk.Stop()
	assert.Zero(t, c.Waiters())
	c.Advance(time.Hour)
	select {
	case <-tk.C():
		t.Fatal("a stopped ticker ticked")
	default:
	}
}

func TestClockSleep(t *testing.T) {
	c := NewClock(Epoch)
	ctx := context.Background()
	done := make(chan error)
	go func() { done <- c.Sleep(ctx, time.Minute) }()
	require.NoError(t, c.BlockUntil(ctx, 1))
	c.Advance(59 * time.Second)
	select {
	case <-done:
		t.Fatal("woke early")
	default:
	}
	c.Advance(time.Second)
	require.NoError(t, <-done)

	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- c.Sleep(cctx, time.Minute) }()
	require.NoError(t, c.BlockUntil(ctx, 1))
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	assert.Zero(t, c.Waiters(), "a cancelled sleep leaves no waiter")

	short, stop := context.WithCancel(ctx)
	stop()
	assert.ErrorIs(t, c.BlockUntil(short, 5), context.Canceled)
}

func TestClockTimersAndAfterFunc(t *testing.T) {
	c := NewClock(time.Time{})
	tm := c.NewTimer(time.Second)
	c.Advance(999 * time.Millisecond)
	select {
	case <-tm.C():
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Millisecond)
	require.Equal(t, Epoch.Add(time.Second), <-tm.C())
	require.False(t, tm.Stop(), "already fired")
	require.False(t, tm.Reset(time.Second))
	require.True(t, tm.Stop())
	c.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("a stopped timer fired")
	default:
	}

	ran := make(chan time.Time, 1)
	c.AfterFunc(time.Minute, func() { ran <- c.Now() })
	c.Advance(time.Minute)
	require.Equal(t, Epoch.Add(time.Hour+time.Second+time.Minute), <-ran)

	tk := c.NewTicker(time.Second)
	c.Advance(time.Second)
	<-tk.C()
	tk.Reset(10 * time.Second)
	c.Advance(9 * time.Second)
	select {
	case <-tk.C():
		t.Fatal("reset ticker fired early")
	default:
	}
	c.Advance(time.Second)
	<-tk.C()
	tk.Stop()
	require.Zero(t, c.Waiters())
}
