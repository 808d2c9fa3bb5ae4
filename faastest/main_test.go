package faastest

import (
	"testing"

	"go.uber.org/goleak"
)

// The fakes wait on timers and clocks from the tests' goroutines, and the
// warm-pool manager and health monitor they drive start goroutines of their
// own: every test must leave none behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
