package faastest

// evKind says what an event does when it comes due.
type evKind uint8

const (
	evComplete evKind = iota + 1
	evQueueTimeout
	evColdReady
	evPodCreated
	evScaleTick
	evPoolTick
	evArrive   // a forwarded invocation reaches its owner
	evCrash    // an instance crashes
	evDetect   // the health monitor takes a dead instance out
	evNodeLoss // a worker node is lost
	evNodeBack // ... and comes back
)

// event is one entry of the event queue. Only the pointer its kind needs
// is set; gen guards against a request recycled since the event was
// scheduled.
type event struct {
	at   int64
	seq  uint64
	aux  int64
	req  *request
	cs   *coldStart
	pool *pool
	inst *instance
	node *node
	fwd  *forwarded
	gen  uint32
	kind evKind
}

// eventHeap is a binary min-heap on (at, seq): ties go in scheduling
// order, which keeps runs deterministic.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	return h[i].at < h[j].at || (h[i].at == h[j].at && h[i].seq < h[j].seq)
}

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = event{}
	q = q[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

func (s *sim) schedule(e event) {
	s.seq++
	e.seq = s.seq
	s.events.push(e)
}

// fifo is a ring buffer queue.
type fifo[T any] struct {
	buf  []T
	head int
	n    int
}

func (q *fifo[T]) len() int { return q.n }

func (q *fifo[T]) push(v T) {
	if q.n == len(q.buf) {
		grown := make([]T, max(8, 2*len(q.buf)))
		for i := range q.n {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
}

func (q *fifo[T]) pop() (T, bool) {
	var zero T
	if q.n == 0 {
		return zero, false
	}
	v := q.buf[q.head]
	q.buf[q.head] = zero
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return v, true
}
