package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The process's registries. Collectors that read one controller or one
// agent are not put here but in registries of their own (one per server,
// one per agent listener), gathered together with these: a test process
// may run many servers and agents.
var (
	reg      = prometheus.NewRegistry()
	agentReg = prometheus.NewRegistry()
)

// Registry is the control plane's process-wide registry (also the Go
// runtime's and the process's metrics). `vgrid up` registers its local
// agent's collector in AgentRegistry, so that the API's /metrics serves
// both.
func Registry() *prometheus.Registry { return reg }

// AgentRegistry is the agent's process-wide registry.
func AgentRegistry() *prometheus.Registry { return agentReg }

// Buckets, in seconds, by the scale of what is timed.
var (
	// requestBuckets: API calls; long polls of the assignments last up to
	// their wait (about 30 s).
	requestBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	// decisionBuckets: a calendar decision and its store write, 0.1 ms to
	// about 6.5 s.
	decisionBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)
	// placementBuckets: the calendar's decision alone, 10 µs to about 1.3 s.
	placementBuckets = prometheus.ExponentialBuckets(0.00001, 2, 18)
	// lagBuckets: 1 ms to about 65 s late (a control plane that was down
	// carries out what fell due meanwhile: those land in +Inf).
	lagBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)
	// guestBuckets: boots, suspends and resumes, 50 ms to about 7 min.
	guestBuckets = prometheus.ExponentialBuckets(0.05, 2, 14)
	// transferBuckets: migrations and image staging, 100 ms to about 55 min.
	transferBuckets = prometheus.ExponentialBuckets(0.1, 2, 16)
)

// HTTP are one server's request metrics. Each server has its own (its
// /metrics gathers them), so that servers in one process count apart.
type HTTP struct {
	// Requests is latency by route (the mux's pattern, e.g.
	// "GET /api/v1/workspaces/{name}", never the raw path) and status
	// code; its _count is the number of requests.
	Requests *prometheus.HistogramVec
}

// NewHTTP makes a server's request metrics (not registered).
func NewHTTP() *HTTP {
	return &HTTP{Requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_http_request_duration_seconds",
		Help:    "Time to serve an API request, by route (the router's pattern, \"unmatched\" for none) and status code; _count counts the requests.",
		Buckets: requestBuckets,
	}, []string{"route", "code"})}
}

// Observe records one request.
func (h *HTTP) Observe(route string, code int, d time.Duration) {
	h.Requests.WithLabelValues(route, strconv.Itoa(code)).Observe(d.Seconds())
}

// The control plane's events.
var (
	// Admission is the time to decide a workspace's lease: the calendar's
	// decision and the store write of it, by lease kind (refusals too).
	Admission = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_lease_admission_duration_seconds",
		Help:    "Time to decide a lease (the calendar's decision plus its store write), by lease kind; refusals included.",
		Buckets: decisionBuckets,
	}, []string{"kind"})
	// Placement is the calendar's Submit alone, by lease kind.
	Placement = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_calendar_placement_duration_seconds",
		Help:    "Time the lease calendar takes to place (or refuse) a submitted lease, by lease kind.",
		Buckets: placementBuckets,
	}, []string{"kind"})
	// ReconcileLag is how late each of the calendar's actions was carried
	// out after its due time (by the reconciler, or by whichever heartbeat,
	// report or request advanced the calendar first), by action kind.
	ReconcileLag = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_reconcile_lag_seconds",
		Help:    "How late the lease calendar's actions were carried out after their due time, by action (start, end, suspend, resume, requeue, stage, migrate).",
		Buckets: lagBuckets,
	}, []string{"action"})
	// Heartbeats counts the heartbeats received, by host.
	Heartbeats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vgrid_heartbeats_total",
		Help: "Heartbeats received from host agents, by host.",
	}, []string{"node"})
	// Boot, Suspend and Resume are what the hosts' agents reported of
	// their guests, by host: QEMU started to guest agent ready; memory
	// saved to disk; saved memory restored.
	Boot = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_workspace_boot_duration_seconds",
		Help:    "Guest boot times reported by the hosts (QEMU started to guest agent ready), by host.",
		Buckets: guestBuckets,
	}, []string{"node"})
	Suspend = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_workspace_suspend_duration_seconds",
		Help:    "Times to suspend a guest (memory saved to disk, process gone) reported by the hosts, by host.",
		Buckets: guestBuckets,
	}, []string{"node"})
	Resume = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_workspace_resume_duration_seconds",
		Help:    "Times to resume a suspended guest reported by the hosts, by host.",
		Buckets: guestBuckets,
	}, []string{"node"})
	// Migration is the duration of live migrations as the control plane
	// ended them, by outcome (succeeded, failed).
	Migration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_workspace_migration_duration_seconds",
		Help:    "Durations of live migrations (the source's measure when it succeeded, else begin to failure), by outcome: succeeded or failed.",
		Buckets: transferBuckets,
	}, []string{"outcome"})

	leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vgrid_leader",
		Help: "1 on the control-plane replica that leads (owns the lease calendar), 0 on the others; 1 on a single control plane.",
	})
	leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vgrid_leadership_changes_total",
		Help: "Times this replica started or stopped leading the control plane.",
	})
)

// The agent's events.
var (
	// Stage is how long a host took to fetch an image into its cache
	// ahead of a lease (the attempt that succeeded), by image.
	Stage = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vgrid_image_stage_duration_seconds",
		Help:    "Time a host agent took to stage (fetch into its cache) an image ahead of a lease, by image; the attempt that succeeded.",
		Buckets: transferBuckets,
	}, []string{"image"})
)

var leaderMu sync.Mutex
var leading = true

func init() {
	reg.MustRegister(Admission, Placement, ReconcileLag, Heartbeats, Boot, Suspend, Resume, Migration, leader, leaderChanges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	agentReg.MustRegister(Stage)
	// A control plane leads until an election says otherwise, as
	// control.Controller does from New on.
	leader.Set(1)
}

// SetLeader records whether this replica leads; a change counts in
// vgrid_leadership_changes_total. The election code calls it.
func SetLeader(on bool) {
	leaderMu.Lock()
	defer leaderMu.Unlock()
	if on != leading {
		leaderChanges.Inc()
		leading = on
	}
	if on {
		leader.Set(1)
	} else {
		leader.Set(0)
	}
}

// Since observes the time elapsed since t0 on o.
func Since(o prometheus.Observer, t0 time.Time) { o.Observe(time.Since(t0).Seconds()) }

// Duration observes d on o, unless it is not positive (not measured).
func Duration(o prometheus.Observer, d time.Duration) {
	if d > 0 {
		o.Observe(d.Seconds())
	}
}

// Descriptions of the metrics collectors read at scrape time.
var (
	// Leases: internal/control, from the calendar.
	Leases = prometheus.NewDesc("vgrid_leases",
		"Leases the lease calendar knows, by kind (immediate, best-effort, reservation, deadline) and state (queued, scheduled, running, suspended, done, cancelled, refused, failed).",
		[]string{"kind", "state"}, nil)
	// Booked: internal/control, from the calendar's holds and the
	// hosts' capacity.
	Booked = prometheus.NewDesc("vgrid_calendar_booked_ratio",
		"Fraction of the hosts' capacity (hosts not lost) that leases hold, by resource (cpu, memory, disk) and window: now, or averaged over the next hour (1h).",
		[]string{"resource", "window"}, nil)
	// Nodes and HeartbeatAge: internal/control, from the stored
	// hosts.
	Nodes = prometheus.NewDesc("vgrid_nodes",
		"Hosts known to the control plane, by state (Ready, NotReady, Lost).",
		[]string{"state"}, nil)
	HeartbeatAge = prometheus.NewDesc("vgrid_node_heartbeat_age_seconds",
		"Time since each host's last heartbeat was received.",
		[]string{"node"}, nil)

	// The agent's workspaces (internal/agent), by workspace ID, name and
	// project, from the hypervisor driver, the cgroups and the taps.
	workspaceLabels      = []string{"id", "workspace", "project"}
	WorkspaceCPU         = prometheus.NewDesc("vgrid_workspace_cpu_seconds_total", "CPU time used by the workspace's QEMU process (its cgroup's counter; a resume starts a new process, and the counter again from 0).", workspaceLabels, nil)
	WorkspaceMemory      = prometheus.NewDesc("vgrid_workspace_memory_bytes", "Memory charged to the workspace's cgroup (guest RAM touched plus QEMU's own).", workspaceLabels, nil)
	WorkspaceDiskRead    = prometheus.NewDesc("vgrid_workspace_disk_read_bytes_total", "Bytes the guest read from its disks (QEMU's block statistics of the current process).", workspaceLabels, nil)
	WorkspaceDiskWritten = prometheus.NewDesc("vgrid_workspace_disk_written_bytes_total", "Bytes the guest wrote to its disks (QEMU's block statistics of the current process).", workspaceLabels, nil)
	WorkspaceDiskAlloc   = prometheus.NewDesc("vgrid_workspace_disk_allocated_bytes", "Host disk space allocated to the workspace's root disk overlay.", workspaceLabels, nil)
	WorkspaceNetRx       = prometheus.NewDesc("vgrid_workspace_network_receive_bytes_total", "Bytes the guest received on its overlay network interfaces (its taps' transmit counters).", workspaceLabels, nil)
	WorkspaceNetTx       = prometheus.NewDesc("vgrid_workspace_network_transmit_bytes_total", "Bytes the guest sent on its overlay network interfaces (its taps' receive counters).", workspaceLabels, nil)
)

// Gatherer gathers the process's registries: Registry and AgentRegistry.
func Gatherer() prometheus.Gatherer { return prometheus.Gatherers{reg, agentReg} }

// Handler serves the process's metrics (Registry and AgentRegistry) and
// those of extra, in Prometheus's text format. A collector that fails is
// reported and the rest served.
func Handler(extra ...prometheus.Gatherer) http.Handler {
	g := append(prometheus.Gatherers{Gatherer()}, extra...)
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// AgentHandler serves an agent process's metrics: AgentRegistry, the Go
// runtime's and the process's, and c's (the agent's collector).
func AgentHandler(c prometheus.Collector) (http.Handler, error) {
	local := prometheus.NewRegistry()
	if err := local.Register(c); err != nil {
		return nil, err
	}
	local.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := prometheus.Gatherers{agentReg, local}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}), nil
}
