// Package storetest is the conformance suite for store.Store backends. A
// backend's tests call Run with a function that opens the backend on a
// directory; the suite checks the semantics that the control plane relies
// on: revisions, compare-and-swap, multi-key transactions, ordered prefix
// listing and paged listing, watch with replay, concurrency, persistence,
// Close and value copying.
package storetest
