package faastest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// azureCSV writes a small file in the Azure Functions 2019 format.
func azureCSV(minutes int, rows [][]int) string {
	var b strings.Builder
	b.WriteString("HashOwner,HashApp,HashFunction,Trigger")
	for m := 1; m <= minutes; m++ {
		fmt.Fprintf(&b, ",%d", m)
	}
	b.WriteString("\n")
	for i, r := range rows {
		fmt.Fprintf(&b, "owner%d,app%d,fn%d,http", i, i, i)
		for _, c := range r {
			fmt.Fprintf(&b, ",%d", c)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestLoadAzureTrace(t *testing.T) {
	in := azureCSV(5, [][]int{{0, 3, 0, 1, 0}, {10, 0, 0, 0, 2}})
	tr, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{Seed: 1})
	require.NoError(t, err)
	assert.Equal(t, []string{"app0/fn0", "app1/fn1"}, tr.Functions)
	assert.Equal(t, []string{"http", "http"}, tr.Triggers)
	assert.EqualValues(t, 16, tr.Total)

	arr := Collect(tr.Workload(), 0)
	require.Len(t, arr, 16)
	sorted(t, arr)
	perMinute := map[string][]int{}
	for _, a := range arr {
		m := int(a.At / time.Minute)
		if perMinute[a.Function] == nil {
			perMinute[a.Function] = make([]int, 5)
		}
		perMinute[a.Function][m]++
	}
	assert.Equal(t, []int{0, 3, 0, 1, 0}, perMinute["app0/fn0"])
	assert.Equal(t, []int{10, 0, 0, 0, 2}, perMinute["app1/fn1"])

	again, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{Seed: 1})
	require.NoError(t, err)
	assert.Equal(t, arr, Collect(again.Workload(), 0), "same seed, same placement")
}

func TestLoadAzureTraceWindowAndLimit(t *testing.T) {
	in := azureCSV(5, [][]int{{1, 2, 3, 4, 5}, {1, 1, 1, 1, 1}, {9, 9, 9, 9, 9}})
	tr, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{MaxFunctions: 2, FirstMinute: 2, Minutes: 3})
	require.NoError(t, err)
	assert.Equal(t, [][]int{{2, 3, 4}, {1, 1, 1}}, tr.Counts)
	assert.EqualValues(t, 12, tr.Total)
}

func TestLoadAzureTraceRejectsBadInput(t *testing.T) {
	good := azureCSV(2, [][]int{{1, 2}})
	tests := []struct {
		name, in string
		opts     TraceOptions
		want     string
	}{
		{"empty", "", TraceOptions{}, "empty file"},
		{"wrong header", strings.Replace(good, "HashApp", "App", 1), TraceOptions{}, `want "HashApp"`},
		{"no minutes", "HashOwner,HashApp,HashFunction,Trigger\n", TraceOptions{}, "at least one minute"},
		{"minute columns out of order", strings.Replace(good, ",1,2\n", ",2,1\n", 1), TraceOptions{}, "minute columns"},
		{"negative count", strings.Replace(good, ",http,1,2", ",http,-1,2", 1), TraceOptions{}, "count must be"},
		{"non-numeric count", strings.Replace(good, ",http,1,2", ",http,x,2", 1), TraceOptions{}, "count must be"},
		{"count over cap", good, TraceOptions{MaxPerMinute: 1}, "count must be"},
		{"short row", good + "o,a,f,http,1\n", TraceOptions{}, "wrong number of fields"},
		{"empty app", strings.Replace(good, "app0", "", 1), TraceOptions{}, "empty HashApp"},
		{"no rows", "HashOwner,HashApp,HashFunction,Trigger,1\n", TraceOptions{}, "no function rows"},
		{"window beyond trace", good, TraceOptions{FirstMinute: 9}, "beyond"},
		{"row without newline", good + "o,a,f,http," + strings.Repeat("1", maxTraceLine+1), TraceOptions{}, "longer than"},
		{"header without newline", "HashOwner," + strings.Repeat("x", maxTraceLine+1), TraceOptions{}, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadAzureTrace(strings.NewReader(tt.in), tt.opts)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrTrace), "typed: %v", err)
			var te *TraceError
			require.ErrorAs(t, err, &te)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func FuzzLoadAzureTrace(f *testing.F) {
	f.Add([]byte(azureCSV(3, [][]int{{1, 0, 2}, {0, 0, 5}})))
	f.Add([]byte("HashOwner,HashApp,HashFunction,Trigger,1\na,b,c,d,99999999999\n"))
	f.Add([]byte("\"unterminated"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := LoadAzureTrace(bytes.NewReader(data), TraceOptions{MaxPerMinute: 1000, Minutes: 60})
		if err != nil {
			if !errors.Is(err, ErrTrace) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		n := int64(0)
		for range Collect(tr.Workload(), 0) {
			n++
		}
		if n != tr.Total {
			t.Fatalf("workload yields %d arrivals, trace says %d", n, tr.Total)
		}
	})
}
