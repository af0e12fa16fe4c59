// Package store defines the key-value Store that the control plane keeps its
// desired and observed state in, with its sentinel errors. Backends live in
// sub-packages (bolt: embedded, the default; etcd: for several control-plane
// replicas); storetest is the conformance suite every backend must pass.
package store
