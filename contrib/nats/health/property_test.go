package health

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/router"
)

// Property: whatever changes a host publishes, across restarts of the
// host, and whatever the network loses, duplicates or delivers late, a
// heartbeat that arrives makes the source's last report for every pod the
// host's verdict (a pod never reported is up), and messages that arrive
// late after it do not undo that.
func TestSourceConvergesOnHeartbeat(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL()) // the source's resync requests go nowhere
	pods := []string{"p0", "p1", "p2", "p3", "p4", "p5"}
	states := []State{StateUp, StateDown, StateDown, StateExited, StateReassigned}
	for seed := range uint64(1000) {
		rng := rand.New(rand.NewPCG(seed, 7))
		src, err := NewSource(SourceConfig{Conn: nc})
		require.NoError(t, err)
		last := map[string]router.HealthReport{}
		report := func(rep router.HealthReport) { last[rep.InstanceID] = rep }
		truth := map[string]State{}
		var seq uint64
		epoch, started := "E0", int64(1)
		var late []Message // delayed, delivered later out of order
		deliver := func(m Message) {
			b, err := Encode(&m)
			require.NoError(t, err)
			src.apply(&nats.Msg{Subject: "faas.health.node.n1", Data: b}, "_INBOX.x", report)
		}
		send := func(m Message) {
			switch r := rng.IntN(10); {
			case r < 3: // lost
			case r < 5:
				late = append(late, m)
			case r < 6:
				deliver(m)
				deliver(m) // duplicated
			default:
				deliver(m)
			}
			if len(late) > 0 && rng.IntN(3) == 0 {
				i := rng.IntN(len(late))
				deliver(late[i])
				late = append(late[:i], late[i+1:]...)
			}
		}
		heartbeat := func(kind Kind) Message {
			m := Message{Version: WireVersion, Kind: kind, Node: "n1", Epoch: epoch, StartedUnixNano: started, Seq: seq, HeartbeatMillis: 1000}
			for _, p := range pods {
				if st, ok := truth[p]; ok && st != StateUp {
					m.Pods = append(m.Pods, PodStatus{Pod: p, State: st})
				}
			}
			return m
		}
		check := func(when string) {
			t.Helper()
			for _, p := range pods {
				want := truth[p]
				if want == "" {
					want = StateUp
				}
				got := StateUp // never reported
				if rep, ok := last[DefaultInstanceID("n1", p)]; ok {
					switch {
					case rep.Exited:
						got = StateExited
					case rep.Reassigned:
						got = StateReassigned
					case !rep.Healthy:
						got = StateDown
					}
				}
				require.Equal(t, want, got, "seed %d, %s: pod %s", seed, when, p)
			}
		}
		for step := range 5 + rng.IntN(40) {
			switch r := rng.IntN(20); {
			case r == 0: // the host restarts: a new epoch, everything up again
				started += 1 + rng.Int64N(10)
				epoch, seq, truth = fmt.Sprint("E", started), 0, map[string]State{} // epochs are unique
			case r < 3:
				send(heartbeat(KindHeartbeat))
			case r < 5: // a heartbeat that arrives, whatever came late before
				deliver(heartbeat(KindHeartbeat))
				check(fmt.Sprint("after the heartbeat of step ", step))
			default:
				var changed []PodStatus
				for range 1 + rng.IntN(3) {
					p := pods[rng.IntN(len(pods))]
					st := states[rng.IntN(len(states))]
					if truth[p] == StateExited || truth[p] == StateReassigned || truth[p] == st || (truth[p] == "" && st == StateUp) {
						continue // final, or no change
					}
					truth[p] = st
					changed = append(changed, PodStatus{Pod: p, State: st})
				}
				if len(changed) > 0 {
					seq++
					send(Message{Version: WireVersion, Kind: KindChange, Node: "n1", Epoch: epoch, StartedUnixNano: started, Seq: seq, Pods: changed})
				}
			}
		}
		for _, m := range late { // the stragglers change nothing
			deliver(m)
		}
		deliver(heartbeat(KindHeartbeat))
		check("at the end")
	}
}
