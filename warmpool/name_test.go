package warmpool

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSanitizeName(t *testing.T) {
	tests := map[string]string{
		"go":                            "go",
		"python3.12":                    "python3.12",
		"Node.JS 20":                    "node.js-20",
		"--java--":                      "java",
		"":                              "pod",
		"...":                           "pod",
		"日本":                            "pod",
		"a/b:c@d":                       "a-b-c-d",
		"x" + string(make([]byte, 100)): "x",
	}
	for in, want := range tests {
		assert.Equal(t, want, sanitizeName(in), "%q", in)
	}
}

// FuzzSanitizeName checks that any runtime name (configuration, possibly
// from a tenant) gives a pod name prefix that Kubernetes accepts: 1 to 40
// lowercase letters, digits, '-' and '.', starting and ending with a letter
// or digit.
func FuzzSanitizeName(f *testing.F) {
	for _, s := range []string{"go", "python3.12", "", "-", "A_B", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := sanitizeName(s)
		if len(out) == 0 || len(out) > 40 {
			t.Fatalf("%q → %q: bad length", s, out)
		}
		for i := 0; i < len(out); i++ {
			c := out[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
				t.Fatalf("%q → %q: byte %q", s, out, c)
			}
		}
		if first, last := out[0], out[len(out)-1]; first == '-' || first == '.' || last == '-' || last == '.' {
			t.Fatalf("%q → %q: bad first or last byte", s, out)
		}
	})
}
