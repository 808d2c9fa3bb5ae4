package router

import (
	"testing"

	"go.uber.org/goleak"
)

// The health monitor and the HTTP checker start goroutines; every test must
// leave none behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
