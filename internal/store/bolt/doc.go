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
//
// Damage. bbolt trusts its file: a damaged page can make it panic, fault
// outside its memory map or loop. So Open and Check first read the whole
// file themselves (check.go), bounds-checking every offset: the meta pages
// (one invalid meta page, as an interrupted write leaves it, is a warning:
// bbolt uses the other), truncation, every page the tree reaches (type,
// id, overflow, elements, key order, each page referred to once), the
// freelist against the pages in use, and every key, value and log entry
// decoded as the store does. Only a sound file is handed to bbolt, under
// recover with faults turned into panics as a second guard. A damaged file
// is an error wrapping ErrDamaged (a *DamagedError naming the file and the
// way out), never a panic, and Open leaves it as it is. An empty (0-byte)
// file is damage: Open makes a new file whole under a temporary name and
// links it into place, so it never leaves an empty one. Each store has an
// ID (ID), kept in it and so in its copies.
//
// Backups. Backup and BackupTo write a consistent copy (bbolt's copy in a
// read transaction) while writers go on; BackupTo writes a temporary file,
// syncs and checks it, then renames it. BackupFile copies a store no
// process has open; Restore checks a backup and puts a copy of it in place,
// keeping the old file aside; Reset sets the file aside for a new, empty
// store. Restore and Reset refuse while a process has the store open.
package bolt
