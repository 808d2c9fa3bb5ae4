package faastest

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDistributionsMatchTheirMeans(t *testing.T) {
	r := newRand(1)
	for _, d := range []Dist{
		Const(5 * time.Millisecond),
		Exp(100 * time.Millisecond),
		LogNormal(50*time.Millisecond, 0.5),
		Uniform(10*time.Millisecond, 30*time.Millisecond),
	} {
		var sum time.Duration
		const n = 200_000
		for range n {
			v := d.Sample(r)
			if v < 0 {
				t.Fatalf("%v: negative sample %v", d, v)
			}
			sum += v
		}
		assert.InEpsilon(t, float64(d.Mean()), float64(sum/n), 0.01, "%v", d)
	}
	assert.Equal(t, "exp(100ms)", Exp(100*time.Millisecond).String())
	assert.Equal(t, "lognormal(median 1s, sigma 0.3)", LogNormal(time.Second, -0.3).String())
	assert.Equal(t, "uniform(2s, 2s)", Uniform(2*time.Second, time.Second).String())
	assert.Equal(t, "0s", Const(-time.Second).String())
	assert.Equal(t, 2*time.Second, Uniform(2*time.Second, time.Second).Sample(r))
	assert.Zero(t, sample(nil, r))
	assert.Zero(t, sample(negative{}, r), "a user's negative sample is clamped")
}

type negative struct{}

func (negative) Sample(*rand.Rand) time.Duration { return -time.Second }
func (negative) Mean() time.Duration             { return -time.Second }
func (negative) String() string                  { return "negative" }
