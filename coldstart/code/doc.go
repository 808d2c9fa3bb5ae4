// Package code fetches function code packages: content-addressed references
// ([Ref]: URI, sha256 digest, size), the [Store] interface that opens them,
// and the stores that implement it.
//
// A package is identified by its digest, not its location. Every byte that
// leaves a store is checked against the reference before anyone trusts it
// ([VerifyReader]): a package longer than declared is cut off as soon as the
// excess shows, and one shorter or with another hash fails at its end. This
// is what lets caches key packages by digest and be shared by every agent on
// a node, and what makes a compromised or confused store unable to make an
// agent run the wrong code.
//
// Stores compose. The origin is a directory (file://) or an HTTP server;
// in front of it a node-local disk cache with a byte budget and LRU eviction
// serves repeated cold starts from disk, and a tiered store chains local
// cache, shared cache and origin so that a miss fills the tiers above it.
package code
