package faas

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
)

// TestUsageMatchesTheAgentsBilledMillis is the proof of metering: under
// concurrent load through the gateway and Invoke, on real agents, the usage
// records add up to what the agents measured (the sum of their
// Stats.BilledMillis times the memory size), to the millisecond.
func TestUsageMatchesTheAgentsBilledMillis(t *testing.T) {
	t.Parallel()
	sink := &memSink{}
	e := newEnv(t, func(c *Config) {
		c.Usage.Sink = sink
		c.Scaler.ScaleDownDelay = time.Hour // every instance that served stays to be asked
	})
	const memory = 256 << 20
	spec := specFor("metered", "sleep")
	spec.MemoryBytes, spec.Concurrency, spec.MaxInstances = memory, 2, 3
	e.deploy(spec)

	const clients, perClient = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				ms := (c + i) % 5
				rid := fmt.Sprintf("c%d-%d", c, i)
				if (c+i)%2 == 0 {
					status, _, body := e.do(http.MethodGet, "/invoke/metered?ms="+strconv.Itoa(ms), map[string]string{lifecycle.HeaderRequestID: rid}, "")
					if status != http.StatusOK {
						errs <- fmt.Errorf("gateway %s: %d %s", rid, status, body)
					}
					continue
				}
				resp, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "metered", Method: http.MethodGet, Path: "/?ms=" + strconv.Itoa(ms), RequestID: rid})
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("invoke %s: %d", rid, resp.StatusCode)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	usage := usageByRequestID(t, sink, clients*perClient)
	var recordMillis, recordMiBMillis int64
	served := map[string]bool{}
	for _, r := range usage {
		require.Equal(t, BilledByAgent, r.BilledBy, "request %s: the agent reports what it billed", r.RequestID)
		require.EqualValues(t, memory, r.MemoryBytes)
		recordMillis += r.BilledMillis()
		recordMiBMillis += r.MiBMillis()
		served[r.InstanceID] = true
	}

	client, err := lifecycle.NewClient(lifecycle.ClientConfig{})
	require.NoError(t, err)
	var agentMillis int64
	for _, ri := range e.dp.Routes("metered") {
		st, err := client.Stats(context.Background(), ri.Instance.Control)
		require.NoError(t, err)
		agentMillis += st.BilledMillis
		delete(served, ri.Instance.ID)
	}
	require.Empty(t, served, "every instance that served is still there to be asked")
	assert.Equal(t, agentMillis, recordMillis, "the records bill what the agents measured, to the millisecond")
	assert.Equal(t, agentMillis*(memory>>20), recordMiBMillis, "GB-seconds: billed milliseconds times the memory size")
	fs, _ := e.dp.FunctionStats("metered")
	assert.EqualValues(t, recordMiBMillis, fs.Usage.MiBMillis)
	assert.Positive(t, agentMillis)
}
