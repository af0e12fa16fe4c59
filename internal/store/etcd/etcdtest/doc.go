// Package etcdtest starts real etcd servers (the installed etcd binary) on
// loopback for tests and benchmarks: a cluster of n members with free
// ports, short heartbeat and election timeouts so that failover takes
// about a second, and handles to kill and restart members. StartCluster
// does not need the testing package, so benchmark programs can use it;
// New wraps it for tests (skip without etcd, stop at cleanup).
package etcdtest
