package loadshed

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// FuzzParsePriority: outside input (a header) never panics; what parses
// prints back to itself.
func FuzzParsePriority(f *testing.F) {
	for _, s := range []string{"", "critical", " Default ", "SHEDDABLE", "urgent", "\xff", "critical critical"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePriority(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPriority) || p != Default {
				t.Fatalf("ParsePriority(%q) = %v, %v", s, p, err)
			}
			return
		}
		if !p.Valid() {
			t.Fatalf("ParsePriority(%q) = invalid %v", s, p)
		}
		if q, err := ParsePriority(p.String()); err != nil || q != p {
			t.Fatalf("round trip of %v: %v, %v", p, q, err)
		}
	})
}

// FuzzShedder drives a Shedder with an arbitrary sequence of operations
// (caller names and priorities are outside input) and checks its
// accounting: in flight equals the tickets outstanding, the limit stays
// within its bounds, and every refusal is a ShedError.
func FuzzShedder(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("admit admit done tick admit started done"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		sig := &switchable{}
		s, err := New(Config{MaxCallers: 4, Window: time.Second, Signals: []Signal{sig}})
		if err != nil {
			t.Fatal(err)
		}
		now := epoch
		var held []Ticket
		for i, op := range ops {
			now = now.Add(time.Duration(op%64) * time.Millisecond)
			switch op % 5 {
			case 0, 1:
				tk, err := s.Admit(now, fmt.Sprint("c", op%7), Priority(int(op>>5)%3-1))
				if err != nil {
					var se *ShedError
					if !errors.As(err, &se) || !errors.Is(err, ErrShed) {
						t.Fatalf("op %d: refusal %v is not a ShedError", i, err)
					}
					continue
				}
				held = append(held, tk)
			case 2:
				if len(held) > 0 {
					k := int(op) % len(held)
					held[k].Done(now, Outcome(op%4))
					held = append(held[:k], held[k+1:]...)
				}
			case 3:
				if len(held) > 0 {
					held[int(op)%len(held)].Started(now)
				}
			case 4:
				sig.on.Store(op&8 != 0)
				s.Tick(now)
			}
			if s.InFlight() != len(held) {
				t.Fatalf("op %d: in flight %d, tickets %d", i, s.InFlight(), len(held))
			}
			if l := s.Limit(); l < DefaultMinLimit || l > DefaultMaxLimit {
				t.Fatalf("op %d: limit %d out of bounds", i, l)
			}
		}
		for i := range held {
			held[i].Done(now, Success)
		}
		if s.InFlight() != 0 {
			t.Fatalf("in flight %d after all done", s.InFlight())
		}
	})
}
