package lifecycle

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const goodDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func goodLoad() LoadRequest {
	return LoadRequest{
		FunctionID: "tenant/fn-1",
		Code:       CodeRef{URI: "file:///srv/f.tar.gz", Digest: goodDigest, Size: 1234},
		Runtime:    "go",
		Env:        map[string]string{"A": "1"},
		Limits:     Limits{Concurrency: 4},
	}
}

func TestLoadRequestValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(r *LoadRequest)
		field string // "" means valid
	}{
		{"valid", func(*LoadRequest) {}, ""},
		{"h2c", func(r *LoadRequest) { r.Protocol = ProtocolH2C }, ""},
		{"no id", func(r *LoadRequest) { r.FunctionID = "" }, "function_id"},
		{"id dot", func(r *LoadRequest) { r.FunctionID = ".x" }, "function_id"},
		{"id slash", func(r *LoadRequest) { r.FunctionID = "/x" }, "function_id"},
		{"id space", func(r *LoadRequest) { r.FunctionID = "a b" }, "function_id"},
		{"id long", func(r *LoadRequest) { r.FunctionID = strings.Repeat("a", MaxFunctionIDLen+1) }, "function_id"},
		{"no uri", func(r *LoadRequest) { r.Code.URI = "" }, "code.uri"},
		{"digest upper", func(r *LoadRequest) { r.Code.Digest = strings.ToUpper(goodDigest) }, "code.digest"},
		{"digest short", func(r *LoadRequest) { r.Code.Digest = "sha256:00" }, "code.digest"},
		{"digest md5", func(r *LoadRequest) { r.Code.Digest = "md5:" + goodDigest[7:] }, "code.digest"},
		{"size 0", func(r *LoadRequest) { r.Code.Size = 0 }, "code.size"},
		{"no runtime", func(r *LoadRequest) { r.Runtime = "" }, "runtime"},
		{"long command", func(r *LoadRequest) { r.Command = strings.Repeat("c", 5000) }, "command"},
		{"many args", func(r *LoadRequest) { r.Args = make([]string, 300) }, "args"},
		{"long arg", func(r *LoadRequest) { r.Args = []string{strings.Repeat("a", 5000)} }, "args[0]"},
		{"env key =", func(r *LoadRequest) { r.Env = map[string]string{"A=B": "1"} }, "env"},
		{"env key empty", func(r *LoadRequest) { r.Env = map[string]string{"": "1"} }, "env"},
		{"env nul", func(r *LoadRequest) { r.Env = map[string]string{"A": "x\x00"} }, "env"},
		{"protocol", func(r *LoadRequest) { r.Protocol = "grpc" }, "protocol"},
		{"negative limit", func(r *LoadRequest) { r.Limits.Concurrency = -1 }, "limits"},
		{"negative start", func(r *LoadRequest) { r.StartTimeoutMillis = -1 }, "limits"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := goodLoad()
			c.edit(&r)
			err := r.Validate()
			if c.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidRequest)
			require.Contains(t, err.Error(), c.field)
		})
	}
}
