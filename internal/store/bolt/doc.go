// Package bolt is the embedded store.Store backend, the default: one bbolt
// file on the control plane's disk.
//
// Layout: bucket "data" maps each key to its value prefixed with the 8-byte
// big-endian revision of its last change; bucket "meta" holds the
// store-wide revision counter; bucket "log" holds the changes of the most
// recent revisions (by default 10,000), one entry per revision (a Txn's
// changes share one), so that Watch can replay history from a recent
// revision, also after a restart. Watching from a revision older than the
// log returns an error wrapping store.ErrCompacted.
//
// Every write, a Txn of several keys included, is one bbolt transaction,
// fsynced before it is acknowledged. Writes are serialized; after each
// commit its changes are fanned out to the watchers in this process. A
// watcher that falls behind by more than its buffer (by default 10,000
// events) has its channel closed, so that a slow reader never blocks
// writers.
//
// ListPage seeks with a cursor and reads one key past the page, so a page
// costs O(limit) however many keys the prefix holds.
//
// The file is locked while open: a second process (or a second Open in the
// same process) fails after a second with an error wrapping ErrLocked.
package bolt
