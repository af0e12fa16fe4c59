// Package leader elects one of several control-plane replicas through
// etcd (the official client's concurrency.Election over a session lease),
// tells every replica who leads and at which API address, and gives the
// leader its fence: the election key and its revision, which every write
// made on the leader's behalf checks (store.Fence), so that a replica
// whose election was lost — paused, cut off, or slow to notice — cannot
// write what a new leader may have decided otherwise.
package leader
