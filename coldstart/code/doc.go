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
//
// A verified package is still hostile input until [Extract] has unpacked
// it. Every entry is checked against a model of the tree written so far
// before anything is written for it, and every write goes through an
// [os.Root]: no path leaves the destination, none goes through a symlink,
// and a symlink is judged by what it resolves to through the package's
// other links, not by how its target is spelt. [Limits] bound the entries
// and the directories they imply (10,000), the nesting (64 path elements),
// the unpacked bytes (512 MiB) and the compression ratio (100:1); a zip's
// central directory is sized up against them before it is parsed. The
// cost of extraction is linear in the archive: the directories being
// written into stay open, so a deep entry costs no walk from the root.
package code
