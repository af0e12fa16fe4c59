// Command controlplane measures workspace creates through the HTTPS API on
// the control plane's store backends side by side, in one run: the
// embedded bbolt store (the default), etcd with one member and etcd with
// three members (internal/store/etcd/etcdtest: real etcd servers from the
// installed binary, fresh, on loopback).
//
// For each backend, in each of -k repetitions (the backends' order turns
// by one from repetition to repetition), it starts a control plane in this
// process (controlplane.Start on a fresh data directory under /var/tmp,
// 127.0.0.1:0, the per-token rate limit off, the project's workspace limit
// raised to fit), waits until it leads (with etcd: its elector says
// Leading), registers a small image from its data directory, and runs one
// host agent in this process with the fake hypervisor driver (its image
// cache filled beforehand; capacity 1,000 CPUs, 4 TiB memory, 100 TiB disk,
// so that no create is refused), joined with the control plane's join
// token. Then -c clients (internal/client, one connection pool shared)
// make -warmup creates, not recorded, and -n creates, each timed on the
// client from the call to the answer: POST /workspaces of a fresh name,
// 1 vCPU, 64 MiB, an immediate lease of one hour. The agent starts each
// workspace (fake driver) and reports it, as a host does: its reports are
// store writes too, part of the same load on every backend.
//
//	go run ./bench/controlplane                 # -n 400 -c 8 -k 1
//	go run ./bench/controlplane -c 1            # one create at a time
//
// It prints, per backend, creates per second (successful creates over the
// wall time of the measured part), the latency p50, p99 and max, the
// errors, and the ratios to the embedded store (throughput and p99); with
// -k above 1, the median of each figure over the repetitions. A run is
// checked: every create answered, the project lists them all, and the
// etcd leader did not change during the measured part (a change would
// hide 503 retries inside the client's latencies). Each run's line also
// gives the median latency of the first and of the last tenth of the
// creates (a cost that grows with the stored workspaces shows there), how
// long after the last answer the agent had every workspace Running, and
// the CPU time per create of this process (control plane, agent, clients)
// and of the etcd servers (from /proc); -cpuprofile writes this process's
// CPU profile.
package main
