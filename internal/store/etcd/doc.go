// Package etcd provides the store.Store kept in an etcd cluster, for
// several control-plane replicas sharing one state. Store keys live under
// a prefix (Config.Prefix); revisions are etcd's (a key's mod_revision,
// the cluster's header revision); Txn is one etcd Txn with compares on
// mod_revision and create_revision; Watch replays etcd's history and
// resumes across member failures. Client gives the underlying client for
// leader election; fence keys (store.Fence) are store keys, so an election
// must be held under the store's prefix (Key gives the etcd key). With
// concurrency.NewElection(session, st.Key("election/")), the fence is
// StoreKey(e.Key()) and e.Rev(): e.Rev() is the key's create revision,
// which is its mod revision (what the fence checks) as long as the leader
// does not Proclaim.
//
// The subpackage etcdtest starts real etcd servers on loopback for tests
// and benchmarks.
package etcd
