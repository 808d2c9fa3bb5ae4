package concurrency_test

import (
	"fmt"
	"time"

	"github.com/faasplane/faas/concurrency"
)

// A fixed keep-alive of 6 s means 6 s, where the KPA's lasts as long as
// its 60 s average remembers the last request.
func ExampleKeepAlive() {
	p, err := concurrency.NewKeepAlive(concurrency.KeepAliveConfig{KeepAlive: 6 * time.Second})
	if err != nil {
		panic(err)
	}
	last := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	idle := concurrency.Observation{Instances: 1, InstanceLimit: 10, StableConcurrency: 0.1, LastActive: last}
	for _, after := range []time.Duration{2 * time.Second, 6 * time.Second} {
		fmt.Printf("%v after the last request: %d instance(s)\n", after, p.Decide(last.Add(after), idle).Desired)
	}
	// Output:
	// 2s after the last request: 1 instance(s)
	// 6s after the last request: 0 instance(s)
}

// The hybrid histogram policy learns that a function is called every 20
// minutes: it unloads it after each call and pre-warms it 2 minutes
// before the next.
func ExampleHybrid() {
	p, err := concurrency.NewHybrid(concurrency.HybridConfig{})
	if err != nil {
		panic(err)
	}
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var last time.Time
	for k := range 5 {
		last = t.Add(time.Duration(k) * 20 * time.Minute)
		p.Decide(last, concurrency.Observation{Instances: 1, InstanceLimit: 10, InFlight: 1, LastActive: last})
		p.Decide(last.Add(time.Second), concurrency.Observation{Instances: 1, InstanceLimit: 10, LastActive: last})
	}
	pre, end, ok := p.Windows()
	fmt.Println("histogram used:", ok, "pre-warm after", pre, "keep until", end)
	for _, after := range []time.Duration{time.Minute, 19 * time.Minute, 30 * time.Minute} {
		o := concurrency.Observation{InstanceLimit: 10, LastActive: last}
		fmt.Printf("%v after the call: %d instance(s)\n", after, p.Decide(last.Add(after), o).Desired)
	}
	// Output:
	// histogram used: true pre-warm after 18m0s keep until 23m6s
	// 1m0s after the call: 0 instance(s)
	// 19m0s after the call: 1 instance(s)
	// 30m0s after the call: 0 instance(s)
}

// A Meter reads its averages in constant time; Idle says what it will
// read if no request arrives, which a concurrency.Quiet policy turns into
// a promise that lets its caller skip rounds.
func ExampleMeter_Idle() {
	m, err := concurrency.NewMeter(concurrency.MeterConfig{})
	if err != nil {
		panic(err)
	}
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.Observe(t, 4)
	m.Observe(t.Add(30*time.Second), 0)
	stable, panicAvg := m.Averages(t.Add(60 * time.Second))
	fmt.Printf("stable %.1f, panic %.1f\n", stable, panicAvg)
	idle := m.Idle(t.Add(60 * time.Second))
	fmt.Println("zero from", idle.Zero.Sub(t).Round(time.Second))
	// Output:
	// stable 2.0, panic 0.0
	// zero from 1m29s
}
