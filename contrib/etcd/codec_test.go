package etcd

import (
	"errors"
	"math"
	"testing"

	"github.com/faasplane/faas/warmpool"
)

func TestLeaseValueRoundTrip(t *testing.T) {
	for _, v := range []leaseValue{{Holder: "node-a-0badcafe"}, {Holder: "h", Claimed: true}, {Holder: "ünïcode/and spaces"}} {
		got, err := decodeLease(encodeLease(v))
		if err != nil || got != v {
			t.Errorf("decode(encode(%+v)) = %+v, %v", v, got, err)
		}
	}
	for _, bad := range []string{"", "null", "{}", `{"holder":""}`, `{"holder":1}`, "not json", `{"holder":"x"`, string(make([]byte, maxValue+1))} {
		if v, err := decodeLease([]byte(bad)); !errors.Is(err, ErrBadValue) {
			t.Errorf("decodeLease(%.20q) = %+v, %v; want ErrBadValue", bad, v, err)
		}
	}
	// A later version's extra fields are not an error.
	if v, err := decodeLease([]byte(`{"holder":"h","claimed":true,"since":3}`)); err != nil || v != (leaseValue{Holder: "h", Claimed: true}) {
		t.Errorf("a value with an unknown field: %+v, %v", v, err)
	}
}

func TestMemberValue(t *testing.T) {
	for _, m := range []warmpool.Member{{ID: "a"}, {ID: "b", Addr: "127.0.0.1:9", Weight: 2.5}} {
		b, err := encodeMember(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMember(m.ID, b)
		if err != nil || got != m {
			t.Errorf("decode(encode(%+v)) = %+v, %v", m, got, err)
		}
	}
	for _, tc := range []struct{ id, value string }{
		{"a", ""}, {"a", "[]"}, {"a", `{"id":"b"}`}, {"a", `{"id":"a","weight":-1}`}, {"", `{"id":""}`},
		{"a", `{"id":"a","weight":"heavy"}`}, {"a", `{"id":"a","weight":1e999}`},
	} {
		if m, err := decodeMember(tc.id, []byte(tc.value)); !errors.Is(err, ErrBadValue) {
			t.Errorf("decodeMember(%q, %q) = %+v, %v; want ErrBadValue", tc.id, tc.value, m, err)
		}
	}
	for _, w := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := encodeMember(warmpool.Member{ID: "a", Weight: w}); err == nil {
			t.Errorf("a member of weight %v was encoded", w)
		}
	}
}

// FuzzDecodeLease feeds the decoder of pod keys' values, which come from
// etcd and so from outside: it never panics, accepts only values with a
// holder, and what it accepts encodes back to a value it decodes the same.
func FuzzDecodeLease(f *testing.F) {
	for _, s := range []string{`{"holder":"a"}`, `{"holder":"a","claimed":true}`, `{"holder":""}`, `{}`, `null`, `{"holder":"a","claimed":1}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeLease(b)
		if err != nil {
			if !errors.Is(err, ErrBadValue) {
				t.Fatalf("error %v does not wrap ErrBadValue", err)
			}
			return
		}
		if v.Holder == "" {
			t.Fatalf("accepted a value without a holder: %q", b)
		}
		again, err := decodeLease(encodeLease(v))
		if err != nil || again != v {
			t.Fatalf("round trip of %+v: %+v, %v", v, again, err)
		}
	})
}

// FuzzDecodeMember feeds the decoder of members' values: it never panics,
// accepts only a member whose ID is its key's and whose weight is a
// finite number >= 0, and what it accepts round-trips.
func FuzzDecodeMember(f *testing.F) {
	for _, s := range []struct{ id, v string }{
		{"a", `{"id":"a","addr":"127.0.0.1:1","weight":1}`}, {"a", `{"id":"b","weight":1}`}, {"a", `{"id":"a","weight":-0.5}`},
		{"x/y", `{"id":"x/y"}`}, {"a", `{"id":"a","weight":1e308}`}, {"", `{"id":""}`},
	} {
		f.Add(s.id, []byte(s.v))
	}
	f.Fuzz(func(t *testing.T, id string, b []byte) {
		m, err := decodeMember(id, b)
		if err != nil {
			if !errors.Is(err, ErrBadValue) {
				t.Fatalf("error %v does not wrap ErrBadValue", err)
			}
			return
		}
		if m.ID != id || m.ID == "" || !(m.Weight >= 0) || math.IsInf(m.Weight, 0) {
			t.Fatalf("accepted %+v for key %q", m, id)
		}
		enc, err := encodeMember(m)
		if err != nil {
			t.Fatalf("an accepted member does not encode: %v", err)
		}
		again, err := decodeMember(id, enc)
		if err != nil || again != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
		}
	})
}
