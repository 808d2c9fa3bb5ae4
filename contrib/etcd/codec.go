package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/faasplane/faas/warmpool"
)

// ErrBadValue reports a value read from etcd that this package did not
// write: another program's key under the prefix, or a corrupt value. What
// etcd returns is outside input, so it is checked, never trusted.
var ErrBadValue = errors.New("etcd: malformed value")

// maxValue bounds the values the decoders accept: this package writes a
// few dozen bytes, and a huge value is someone else's.
const maxValue = 64 << 10

// leaseValue is the value of a pod's key: who holds it and whether its pod
// was handed to a function. JSON, so that `etcdctl get` shows it plainly;
// unknown fields are ignored, so that a later version may add some.
type leaseValue struct {
	Holder  string `json:"holder"`
	Claimed bool   `json:"claimed,omitempty"`
}

func encodeLease(v leaseValue) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a struct of a string and a bool always marshals
	}
	return b
}

// decodeLease parses a pod key's value.
func decodeLease(b []byte) (leaseValue, error) {
	var v leaseValue
	if len(b) > maxValue {
		return v, fmt.Errorf("%w: lease value of %d bytes", ErrBadValue, len(b))
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return leaseValue{}, fmt.Errorf("%w: lease value: %w", ErrBadValue, err)
	}
	if v.Holder == "" {
		return leaseValue{}, fmt.Errorf("%w: lease value without a holder", ErrBadValue)
	}
	return v, nil
}

// memberValue is the value of a member's key.
type memberValue struct {
	ID     string  `json:"id"`
	Addr   string  `json:"addr,omitempty"`
	Weight float64 `json:"weight"`
}

func encodeMember(m warmpool.Member) ([]byte, error) {
	if err := checkMember(m); err != nil {
		return nil, err
	}
	return json.Marshal(memberValue(m))
}

// decodeMember parses the value of the key of member id.
func decodeMember(id string, b []byte) (warmpool.Member, error) {
	if len(b) > maxValue {
		return warmpool.Member{}, fmt.Errorf("%w: member value of %d bytes", ErrBadValue, len(b))
	}
	var v memberValue
	if err := json.Unmarshal(b, &v); err != nil {
		return warmpool.Member{}, fmt.Errorf("%w: member %q: %w", ErrBadValue, id, err)
	}
	m := warmpool.Member(v)
	if m.ID != id {
		return warmpool.Member{}, fmt.Errorf("%w: the key of member %q holds member %q", ErrBadValue, id, m.ID)
	}
	if err := checkMember(m); err != nil {
		return warmpool.Member{}, fmt.Errorf("%w: %w", ErrBadValue, err)
	}
	return m, nil
}

// checkMember validates a member as Heartbeat and the decoder do.
func checkMember(m warmpool.Member) error {
	switch {
	case m.ID == "":
		return errors.New("etcd: a member needs an ID")
	case m.Weight < 0 || math.IsNaN(m.Weight) || math.IsInf(m.Weight, 0):
		return fmt.Errorf("etcd: member %q: weight %v is not a finite number >= 0", m.ID, m.Weight)
	}
	return nil
}
