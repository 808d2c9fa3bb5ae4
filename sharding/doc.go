// Package sharding maps keys to nodes with weighted rendezvous hashing, also
// known as highest-random-weight (HRW) hashing.
//
// Every node scores every key with a hash of the pair (key, node), and the key
// belongs to the node with the highest score. Sorting all nodes by their score
// gives the key's preference list: when the first node is offline, the key
// goes to the second, and so on. Because a node's score for a key does not
// depend on which other nodes exist, membership changes move as few keys as
// possible: adding a node moves to it only the keys it now wins (about
// 1/(n+1) of them), and removing a node moves only that node's keys, which
// spread evenly over all survivors. A consistent-hash ring, by contrast, hands
// a removed node's whole range to its successor on the ring, doubling that
// node's load unless it runs many virtual nodes, and virtual nodes cost memory
// and lookups.
//
// Lookups cost O(n) in the number of nodes: the key is hashed once with xxhash
// and combined with each node's precomputed hash through a 64-bit mixer, which
// takes about a nanosecond per node. For the tens to low thousands of
// dataplane nodes or pool managers this package serves, that is cheaper than
// a ring lookup plus its cache misses. Weights use the logarithmic method: a
// node with weight w scores -w/ln(u), where u in (0,1) is the pair's hash
// scaled to the unit interval, which gives each node a share of keys
// proportional to its weight and keeps the minimal-movement property when one
// node is reweighted. Tables whose weights are all equal skip the logarithm,
// and weighted tables compute it only for the few nodes that can still win.
//
// A [Table] is immutable: [Table.Add], [Table.Remove] and [Table.Reweight]
// return a new table, so a holder can publish tables through an
// atomic.Pointer while any number of goroutines read without locks. The
// mapping is part of the package's contract: the same key and the same nodes
// give the same answer in every process, on every platform and in every
// release (a golden-vector test pins it). The logarithm is computed by this
// package with plain IEEE-754 operations, not by math.Log, whose assembly
// implementations may differ in the last bit between platforms.
package sharding
