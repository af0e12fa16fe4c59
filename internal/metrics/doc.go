// Package metrics defines every Prometheus metric vgrid exports, in one
// place with its help text: the control plane's process-wide metrics
// (request latency, admission and placement latency, reconcile lag,
// leadership, heartbeats, suspend, resume and migration durations),
// registered in Registry; the agent's process-wide ones (image staging),
// registered in AgentRegistry; and the descriptions of the metrics that
// collectors read at scrape time (leases, calendar utilization, hosts'
// heartbeat age in internal/control; per-workspace usage in
// internal/agent). Small helpers observe durations. Nothing here reads
// the controller or the agent: they describe themselves with these
// definitions (internal/control/metrics.go, internal/agent/metrics.go).
//
// The registries are this package's own, never Prometheus's default one,
// so that tests running several servers or agents in one process do not
// collide: per-server or per-agent collectors go into registries of
// their own (see internal/server/metrics.go) and are gathered together
// with these.
package metrics
