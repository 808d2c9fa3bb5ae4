package faas

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
)

func validSpec() FunctionSpec {
	return FunctionSpec{ID: "hello", Runtime: "go", Code: code.RefFor("file:///code/hello.tar.gz", []byte("package"))}
}

func TestSpecValidateAcceptsMinimalSpec(t *testing.T) {
	require.NoError(t, validSpec().Validate())
}

func TestSpecValidateNamesEveryBadField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*FunctionSpec)
		field  string
	}{
		{"empty ID", func(s *FunctionSpec) { s.ID = "" }, "ID"},
		{"ID with space", func(s *FunctionSpec) { s.ID = "a b" }, "ID"},
		{"ID too long", func(s *FunctionSpec) { s.ID = strings.Repeat("a", 300) }, "ID"},
		{"no runtime", func(s *FunctionSpec) { s.Runtime = "" }, "Runtime"},
		{"no digest", func(s *FunctionSpec) { s.Code.Digest = "" }, "Code"},
		{"bad digest", func(s *FunctionSpec) { s.Code.Digest = "sha256:XYZ" }, "Code"},
		{"zero size", func(s *FunctionSpec) { s.Code.Size = 0 }, "Code"},
		{"env with =", func(s *FunctionSpec) { s.Env = map[string]string{"A=B": "x"} }, "Env"},
		{"env with NUL", func(s *FunctionSpec) { s.Env = map[string]string{"A": "x\x00"} }, "Env"},
		{"bad protocol", func(s *FunctionSpec) { s.Protocol = "spdy" }, "Protocol"},
		{"bad mode", func(s *FunctionSpec) { s.Mode = 9 }, "Mode"},
		{"negative concurrency", func(s *FunctionSpec) { s.Concurrency = -1 }, "Concurrency"},
		{"negative max concurrency", func(s *FunctionSpec) { s.MaxConcurrency = -1 }, "MaxConcurrency"},
		{"negative min instances", func(s *FunctionSpec) { s.MinInstances = -1 }, "MinInstances"},
		{"min above max", func(s *FunctionSpec) { s.MinInstances, s.MaxInstances = 5, 2 }, "MinInstances"},
		{"too many instances", func(s *FunctionSpec) { s.MaxInstances = MaxInstancesLimit + 1 }, "MaxInstances"},
		{"negative request timeout", func(s *FunctionSpec) { s.RequestTimeout = -time.Second }, "RequestTimeout"},
		{"queue beyond the default request timeout", func(s *FunctionSpec) { s.QueueTimeout = 2 * DefaultRequestTimeout }, "QueueTimeout"},
		{"queue beyond request timeout", func(s *FunctionSpec) { s.RequestTimeout, s.QueueTimeout = time.Second, 2*time.Second }, "QueueTimeout"},
		{"init attempts", func(s *FunctionSpec) { s.InitAttempts = 1000 }, "InitAttempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.mutate(&s)
			err := s.Validate()
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidSpec)
			var se *SpecError
			require.ErrorAs(t, err, &se)
			require.NotEmpty(t, se.Fields)
			assert.Equal(t, tt.field, se.Fields[0].Field, "%v", err)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
		})
	}
}

func TestSpecValidateReportsAllFields(t *testing.T) {
	err := FunctionSpec{}.Validate()
	var se *SpecError
	require.True(t, errors.As(err, &se))
	fields := map[string]bool{}
	for _, f := range se.Fields {
		fields[f.Field] = true
	}
	assert.True(t, fields["ID"] && fields["Runtime"] && fields["Code"], "%v", err)
}

func TestSpecDefaults(t *testing.T) {
	s := validSpec().withDefaults()
	assert.Equal(t, DefaultConcurrency, s.Concurrency)
	assert.Equal(t, DefaultMaxInstances, s.MaxInstances)
	assert.Equal(t, DefaultKeepAlive, s.KeepAlive)
	assert.Equal(t, DefaultRequestTimeout, s.RequestTimeout)
	assert.Equal(t, DefaultQueueTimeout, s.QueueTimeout)
	assert.Equal(t, DefaultInitAttempts, s.InitAttempts)

	ex := validSpec()
	ex.Mode, ex.Concurrency = concurrency.Exclusive, 50
	assert.Equal(t, 1, ex.withDefaults().Concurrency, "exclusive means one request per instance")

	short := validSpec()
	short.RequestTimeout = 5 * time.Second
	assert.Equal(t, 5*time.Second, short.withDefaults().QueueTimeout, "queue time never exceeds the request timeout")

	env := validSpec()
	env.Env = map[string]string{"A": "1"}
	d := env.withDefaults()
	env.Env["A"] = "changed"
	assert.Equal(t, "1", d.Env["A"], "defaults copy the caller's map")
}
