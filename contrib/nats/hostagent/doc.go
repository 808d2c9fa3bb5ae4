// Package hostagent is the host agent of a node: the process that runs once
// on every machine of the platform, checks the runtime agents of the pods
// on that machine, and publishes what it finds over NATS (package health),
// so that every dataplane takes a hung or dead instance out of its routes
// within a ping interval, whether or not the kubelet, the dataplane's own
// network path or its pull checks have noticed.
//
// An [Agent] learns its node's pods from a [PodLister] — any
// warmpool.PodProvider, filtered by warmpool.Pod.Node, watched when it is a
// warmpool.PodWatcher and listed again every Config.Resync; or a
// [FileLister], a JSON file a node daemon keeps up to date, which is what
// the faas-hostagent command reads. Every Config.Interval (500 ms) it pings
// each pod's agent on its control listener with the pod's token
// (lifecycle.Client.Ping) and judges the answer: ready means up, an exited
// function process means exited, an agent serving another function or none
// means reassigned, and Config.FailureThreshold (2) failed pings in a row
// (timeouts, refused connections, errors) turn a pod that was up down. A
// pod whose agent never served a Ready function — a warm pod, one being
// loaded — gets no verdict: the dataplane does not route it. A pod that
// leaves the node after serving a function is reported exited.
//
// The verdicts that changed in a round go out at once, in one message, and
// the heartbeats of the agent's health.Publisher (every second) repeat the
// pods that are not up, so a dataplane that missed a message, restarted or
// reconnected is right again within a second, or at once by asking for a
// snapshot. If the agent dies, its heartbeats stop and the dataplanes undo
// its "down" verdicts after three intervals: their own pull checks then
// decide alone. The pods are reported by pod ID; the dataplane's
// health.Source names the instance from it (health.DefaultInstanceID).
package hostagent
