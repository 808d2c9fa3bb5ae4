package loadshed_test

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/faasplane/faas/loadshed"
)

// A gateway admits each request, reports when it starts and ends, and
// maps a refusal to 503 with a Retry-After header.
func ExampleShedder() {
	shed, err := loadshed.New(loadshed.Config{Capacity: 100})
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	ticket, err := shed.Admit(now, "orders-service", loadshed.Default)
	if err != nil {
		status, retry := http.StatusServiceUnavailable, 0.0
		if d, ok := loadshed.RetryAfter(err); ok {
			retry = math.Ceil(d.Seconds())
		}
		fmt.Println(status, "Retry-After:", retry)
		return
	}
	ticket.Started(now.Add(2 * time.Millisecond)) // got an instance slot
	// ... proxy the request ...
	ticket.Done(now.Add(40*time.Millisecond), loadshed.Success)
	fmt.Println("admitted; in flight now:", shed.InFlight())
	// Output: admitted; in flight now: 0
}

// While shedding, a Sheddable request is refused first; the error says
// why and when to retry.
func ExampleShedError() {
	overloaded := loadshed.SignalFunc(func(time.Time) bool { return true }) // e.g. CPU above 90 %
	shed, _ := loadshed.New(loadshed.Config{Capacity: 100, Signals: []loadshed.Signal{overloaded}})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	shed.Tick(start)
	shed.Tick(start.Add(100 * time.Millisecond)) // one overloaded interval

	_, err := shed.Admit(start.Add(150*time.Millisecond), "batch-job", loadshed.Sheddable)
	var se *loadshed.ShedError
	if errors.As(err, &se) {
		fmt.Println(errors.Is(err, loadshed.ErrShed), se.Reason, se.RetryAfter)
	}
	_, err = shed.Admit(start.Add(150*time.Millisecond), "checkout", loadshed.Critical)
	fmt.Println("critical:", err)
	// Output:
	// true sheddable request during overload 1s
	// critical: <nil>
}

// ParsePriority reads a priority from a header; anything unknown is an
// error rather than a silent default.
func ExampleParsePriority() {
	for _, h := range []string{"critical", "", "urgent"} {
		p, err := loadshed.ParsePriority(h)
		fmt.Println(p, err != nil)
	}
	// Output:
	// critical false
	// default false
	// default true
}
