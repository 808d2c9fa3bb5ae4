package clock_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/stretchr/testify/require"
)

func TestSystemClock(t *testing.T) {
	c := clock.Or(nil)
	before := time.Now()
	require.False(t, c.Now().Before(before))

	tm := c.NewTimer(time.Millisecond)
	<-tm.C()
	require.False(t, tm.Stop(), "fired already")
	require.False(t, tm.Reset(time.Hour))
	require.True(t, tm.Stop())

	tk := c.NewTicker(time.Millisecond)
	<-tk.C()
	tk.Reset(time.Millisecond)
	<-tk.C()
	tk.Stop()

	fired := make(chan struct{})
	af := c.AfterFunc(time.Millisecond, func() { close(fired) })
	<-fired
	require.Nil(t, af.C())
}

func TestSleepHonoursTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, clock.Sleep(ctx, clock.System(), time.Hour), context.Canceled)
	require.NoError(t, clock.Sleep(context.Background(), clock.System(), time.Microsecond))
}

// A shell takes a Clock in its config and falls back to the system clock.
func ExampleOr() {
	type config struct{ Clock clock.Clock }
	c := clock.Or(config{}.Clock)
	t := c.NewTimer(time.Millisecond)
	defer t.Stop()
	<-t.C()
	fmt.Println("fired")
	// Output: fired
}
