package otel

import (
	"sync"
	"sync/atomic"
)

// labeler bounds the function label: the first max function IDs it sees
// keep their own value, every later one gets OtherFunctions. A label once
// given is kept for the process's life, so that a function's series never
// changes its name; the price is that functions removed early keep their
// slot.
type labeler struct {
	max   int
	known sync.Map // function ID → struct{}: the IDs with their own label
	full  atomic.Bool
	mu    sync.Mutex // serializes admissions
	n     int        // guarded by mu
}

func newLabeler(max int) *labeler { return &labeler{max: max} }

// label returns fn's label value. It takes no lock once fn is known or the
// cap is reached.
func (l *labeler) label(fn string) string {
	if _, ok := l.known.Load(fn); ok {
		return fn
	}
	if fn == OtherFunctions || l.full.Load() {
		return OtherFunctions
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.known.Load(fn); ok {
		return fn
	}
	if l.n >= l.max {
		l.full.Store(true)
		return OtherFunctions
	}
	l.known.Store(fn, struct{}{})
	l.n++
	return fn
}
