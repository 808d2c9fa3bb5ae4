package concurrency

// FunctionLimit caps the requests in flight across all instances of one
// function, to protect what the function itself calls (its databases and
// downstream services) whatever the number of instances. It is a [Slots]
// counter that reports a full limit as [ErrFunctionLimit] instead of
// queueing: the caller fails fast and may retry later.
//
// Acquire the function limit before an instance slot, and release it after
// the instance slot, so that a request never holds an instance while it is
// refused by the function. All methods are safe for concurrent use and do
// not allocate.
type FunctionLimit struct {
	slots Slots
}

// NewFunctionLimit returns a function-wide limit of limit requests in
// flight. A limit of 0 or below means no limit ([MaxLimit]); larger values
// are lowered to MaxLimit.
func NewFunctionLimit(limit int) *FunctionLimit {
	l := &FunctionLimit{}
	l.SetLimit(limit)
	return l
}

// Acquire takes one unit of the function's limit. It returns nil, or
// [ErrFunctionLimit] when the function already has Limit requests in flight.
// It never blocks.
func (l *FunctionLimit) Acquire() error {
	if l.slots.TryAcquire() {
		return nil
	}
	return ErrFunctionLimit
}

// Release returns a unit taken by a successful Acquire. Like
// [Slots.Release], releasing more than was acquired panics.
func (l *FunctionLimit) Release() { l.slots.Release() }

// InFlight returns the number of requests holding the limit.
func (l *FunctionLimit) InFlight() int { return l.slots.InFlight() }

// Limit returns the limit in force ([MaxLimit] when unlimited).
func (l *FunctionLimit) Limit() int { return l.slots.Limit() }

// SetLimit changes the limit at run time; 0 or below removes it. Requests
// in flight keep their units.
func (l *FunctionLimit) SetLimit(limit int) {
	if limit <= 0 {
		limit = MaxLimit
	}
	l.slots.SetLimit(limit)
}
