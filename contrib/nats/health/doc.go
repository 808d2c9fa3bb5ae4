// Package health carries host-local health verdicts over NATS, from the
// host agent of each node to every dataplane: the push side of
// router.HealthSource. A dataplane's own pull checks cross the network and
// depend on its view of it; a checker on the pod's own host sees a hung or
// dead agent within one ping interval and needs neither the kubelet nor the
// network path between the dataplane and the node.
//
// A [Publisher] runs on each host. It holds its verdict on every pod of the
// node (up, down, exited, reassigned), publishes each change at once on the
// node's subject ([Subjects.Node], prefix.node.<node>), and sends a
// heartbeat every second listing every pod it does not report up, with the
// sequence number of its latest change and an epoch that names its run. A
// [Source] in each dataplane subscribes to all nodes and turns those into
// router.HealthReport values: a "down" takes the instance out of the routes
// the moment it arrives (one NATS hop, well under a millisecond on a
// quiet network; see BENCHMARKS.md), and an "up" lets it back unless the
// dataplane's own pull checks hold it out — the router keeps one verdict per
// side and routes only when neither says no. Instances are named from pods
// with [DefaultInstanceID] (coldstart.InstanceID: the dataplane names an instance after its pod).
//
// The state converges, whatever is lost. When a Source subscribes, when its
// connection comes back, and when a change's sequence number skips one, it
// requests a snapshot (prefix.sync, or prefix.sync.<node>), which every
// host answers with the list of its pods not up; a heartbeat carries the
// same list, so a lost message is repaired within a second. And staleness
// is not death: when a host stays silent for 3 heartbeat intervals
// (SourceConfig.StaleAfter), the Source undoes its "down" verdicts and
// forgets the host, so that a dead host agent or a broken link to the
// broker never leaves instances ejected, and never ejects them either. Its
// instances are then judged by the dataplane's pull checks alone, under the
// panic threshold that keeps a partition from draining a whole node
// (router.HealthConfig.PanicThreshold). The messages are JSON ([Message]);
// [Decode] bounds and validates everything a Source accepts, and a message
// on a node's subject must name that node, so NATS permissions that let a
// host publish on its own subject only keep it from speaking for another.
package health
