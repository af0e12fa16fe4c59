package control

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// What agents and admins send is checked like what users send: every field
// of the agent protocol's bodies (a host's record, a report about one of
// its workspaces) and of the admin bodies (projects, tokens, images), each
// bad field named by its JSON path ("node.capacity.millicpu",
// "report.state"). These functions are pure: the clock comes in as an
// argument and nothing is read from disk (validImage checks image files).

// Bounds of a host's record.
const (
	MaxNodeMilliCPU  = 4096 * 1000      // 4096 cores
	MaxNodeMemory    = 64 * model.TiB   // bytes
	MaxNodeDisk      = 1024 * model.TiB // bytes (1 PiB)
	MaxNodeBandwidth = model.TiB        // bytes per second
	MaxLabels        = 64               // labels of a host
	MaxLabelLen      = 63               // bytes of a label's key, and of its value
	MaxBootSample    = model.Duration(time.Hour)
	maxRateSample    = int64(model.TiB) // bytes per second, of suspend and resume rates
	reservedLabels   = "vgrid.io/"      // label keys the control plane sets itself
	maxTextLen       = 256              // bytes of a free-text field (hypervisor, kernel, hostname)
	maxVersionLen    = 64               // bytes of a version string
	maxAddressLen    = 255              // bytes of a host address
)

// Bounds of an agent's report.
const (
	MaxReason       = 4 << 10 // bytes: QEMU's last 1 KiB of stderr and the context around it fit
	MaxIDLen        = 128     // bytes of a workspace ID
	MaxPID          = 1 << 22 // Linux's largest pid_max
	MaxCgroups      = 16      // cgroup controllers of a report
	MaxPathLen      = 4096    // bytes of a path (cgroup directories, image files)
	MaxAddresses    = 64      // guest addresses of a report
	MaxGuestVCPUs   = 4096
	MaxTook         = model.Duration(24 * time.Hour) // suspend_took, resume_took
	MaxCPUSeconds   = 1e12                           // 4096 cores for about 7.7 years
	MaxGuestUptimeS = 10 * 366 * 24 * 3600.0
	// MaxClockAhead is how far ahead of the control plane's clock a time
	// sent by an agent may be; no time may be before MinTime.
	MaxClockAhead = time.Hour
)

// MinTime is the earliest time an agent or an admin may send; the zero
// time (0001-01-01T00:00:00Z, what Go's encoder writes for an unset time)
// means unset and is always accepted.
var MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Bounds of the admin bodies.
const (
	MaxCmdlineLen   = 4096
	MaxImageFile    = 1024 * model.TiB // bytes of one image file
	MaxImageMinDisk = 1024 * model.TiB
	MaxTokenTTL     = model.Duration(10 * 366 * 24 * time.Hour)
	MaxJoinHosts    = 100000
)

// AgentStates are the states an agent may report: the others (Pending,
// Queued, Scheduled) are the control plane's own.
var AgentStates = []model.State{model.StateStarting, model.StateRunning, model.StateStopping,
	model.StateStopped, model.StateSuspended, model.StateFailed}

// Accels are the accelerators a host or a report may name ("" is unknown;
// fake is the test driver's).
var Accels = []string{"kvm", "tcg", "fake"}

// CgroupModes are what a host's cgroup field may say ("" is unknown).
var CgroupModes = []string{"v1", "v2", "hybrid"}

var (
	labelKeyRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$`)
	hostNameRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)
	idRE         = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	controllerRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// maxFieldErrors bounds the problems one body reports.
const maxFieldErrors = 50

type fieldErrs []api.FieldError

func (f *fieldErrs) add(field, format string, args ...any) {
	if len(*f) >= maxFieldErrors {
		return
	}
	*f = append(*f, api.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// MaxRunning bounds the guests a heartbeat lists.
const MaxRunning = 10000

// MaxNodeImages bounds the cached images a host lists.
const MaxNodeImages = 1000

// ValidateNode checks a host's record as an agent sends it (POST /nodes,
// PUT /nodes/{node}/heartbeat). A zero capacity passes: a heartbeat need
// not carry one; RegisterNode asks for CPU and memory itself. Times set by
// the control plane (registered_at, last_heartbeat) are ignored but must
// be sane; the measurements must look like the control plane's own.
func ValidateNode(n model.Node, now time.Time) []api.FieldError {
	var f fieldErrs
	if !NameRE.MatchString(n.Name) {
		f.add("node.name", "must be a lower-case host name: 1-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit")
	}
	if n.Address != "" {
		if reason := checkAddress(n.Address); reason != "" {
			f.add("node.address", "%s", reason)
		}
	}
	if len(n.Running) > MaxRunning {
		f.add("node.running", "at most %d workspaces, got %d", MaxRunning, len(n.Running))
	} else {
		for i, id := range n.Running {
			if reason := CheckWorkspaceID(id); reason != "" {
				f.add(fmt.Sprintf("node.running[%d]", i), "%s", reason)
			}
		}
	}
	if len(n.Images) > MaxNodeImages {
		f.add("node.images", "at most %d images, got %d", MaxNodeImages, len(n.Images))
	} else {
		for i, name := range n.Images {
			if !NameRE.MatchString(name) {
				f.add(fmt.Sprintf("node.images[%d]", i), "want an image name, got %s", quoteShort(name))
			}
		}
	}
	if n.Transfer != "" {
		if _, _, err := net.SplitHostPort(n.Transfer); err != nil {
			f.add("node.transfer", "want host:port, got %s", quoteShort(n.Transfer))
		} else if reason := checkAddress(n.Transfer); reason != "" {
			f.add("node.transfer", "%s", reason)
		}
	}
	checkLabels(&f, "node.labels", n.Labels)
	c := n.Capacity
	checkRange(&f, "node.capacity.millicpu", c.MilliCPU, int64(MaxNodeMilliCPU), "")
	checkRange(&f, "node.capacity.memory", int64(c.Memory), int64(MaxNodeMemory), "64Ti")
	checkRange(&f, "node.capacity.disk", int64(c.Disk), int64(MaxNodeDisk), "1024Ti")
	checkRange(&f, "node.capacity.bandwidth", int64(c.Bandwidth), int64(MaxNodeBandwidth), "1Ti per second")
	checkOneOf(&f, "node.accel", n.Accel, Accels)
	checkText(&f, "node.hypervisor", n.Hypervisor, maxTextLen)
	checkOneOf(&f, "node.cgroup", n.Cgroup, CgroupModes)
	checkText(&f, "node.agent_version", n.AgentVersion, maxVersionLen)
	checkTime(&f, "node.registered_at", n.RegisteredAt, now)
	checkTime(&f, "node.last_heartbeat", n.LastHeartbeat, now)
	if m := n.Measured; m != nil {
		if len(m.Boot) > model.MaxSamples {
			f.add("node.measured.boot", "at most %d samples, got %d", model.MaxSamples, len(m.Boot))
		} else {
			for i, d := range m.Boot {
				if d <= 0 || d > MaxBootSample {
					f.add(fmt.Sprintf("node.measured.boot[%d]", i), "must be more than 0 and at most %v, got %v", MaxBootSample, d)
				}
			}
		}
		checkRates(&f, "node.measured.suspend_rates", m.Suspend)
		checkRates(&f, "node.measured.resume_rates", m.Resume)
		checkRates(&f, "node.measured.stage_rates", m.Stage)
	}
	return f
}

// validRegistration checks a host being registered: ValidateNode, and some
// CPU and memory to offer.
func validRegistration(n model.Node, now time.Time) []api.FieldError {
	f := fieldErrs(ValidateNode(n, now))
	if n.Capacity.MilliCPU == 0 {
		f.add("node.capacity.millicpu", "required: a host offers some CPU")
	}
	if n.Capacity.Memory == 0 {
		f.add("node.capacity.memory", "required: a host offers some memory")
	}
	return f
}

// validHeartbeat checks a heartbeat of the host name: ValidateNode, its
// own name (or none), and memory with a capacity (one with no CPU is not
// taken).
func validHeartbeat(name string, hb model.Node, now time.Time) []api.FieldError {
	if hb.Name == "" {
		hb.Name = name
	}
	f := fieldErrs(ValidateNode(hb, now))
	if hb.Name != name {
		f.add("node.name", "must be %q, the node of this path, or absent", name)
	}
	if hb.Capacity.MilliCPU > 0 && hb.Capacity.Memory == 0 {
		f.add("node.capacity.memory", "required with a capacity")
	}
	return f
}

func checkRates(f *fieldErrs, field string, rates []int64) {
	if len(rates) > model.MaxSamples {
		f.add(field, "at most %d samples, got %d", model.MaxSamples, len(rates))
		return
	}
	for i, r := range rates {
		if r <= 0 || r > maxRateSample {
			f.add(fmt.Sprintf("%s[%d]", field, i), "must be 1 to %d bytes per second, got %d", maxRateSample, r)
		}
	}
}

func checkLabels(f *fieldErrs, field string, labels map[string]string) {
	if len(labels) > MaxLabels {
		f.add(field, "at most %d labels, got %d", MaxLabels, len(labels))
		return
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := labels[k]
		path := spec.FieldPath(field, k)
		switch {
		case len(k) > MaxLabelLen || !labelKeyRE.MatchString(k):
			f.add(path, "a key is 1-%d characters of letters, digits, '.', '_', '-' and '/', starting and ending with a letter or digit", MaxLabelLen)
		case strings.HasPrefix(k, reservedLabels):
			f.add(path, "keys under %s are the control plane's", reservedLabels)
		case len(v) > MaxLabelLen || !labelValueRE.MatchString(v):
			f.add(path, "a value is at most %d characters of letters, digits, '.', '_' and '-', starting and ending with a letter or digit", MaxLabelLen)
		}
	}
}

// checkAddress accepts a host name or an IP address, optionally with a
// port.
func checkAddress(a string) string {
	const want = "want a host name or an IP address, optionally with :port (1 to 65535)"
	if len(a) > maxAddressLen {
		return fmt.Sprintf("at most %d bytes, got %d", maxAddressLen, len(a))
	}
	host := a
	if h, p, err := net.SplitHostPort(a); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return want
		}
		host = h
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if hostNameRE.MatchString(host) && len(host) <= 253 {
		return ""
	}
	return want
}

// ValidateReport checks an agent's report about one workspace. now is the
// control plane's clock: no time may be more than MaxClockAhead ahead of
// it, nor before MinTime.
func ValidateReport(r api.AgentReport, now time.Time) []api.FieldError {
	var f fieldErrs
	if reason := CheckWorkspaceID(r.ID); reason != "" {
		f.add("report.id", "%s", reason)
	}
	if r.Generation < 0 {
		f.add("report.generation", "must not be negative, got %d", r.Generation)
	}
	if !isAgentState(r.State) {
		names := make([]string, len(AgentStates))
		for i, s := range AgentStates {
			names[i] = string(s)
		}
		f.add("report.state", "want one of %s, got %s", strings.Join(names, ", "), quoteShort(string(r.State)))
	}
	switch {
	case len(r.Reason) > MaxReason:
		f.add("report.reason", "at most %d bytes, got %d", MaxReason, len(r.Reason))
	case !isText(r.Reason, true):
		f.add("report.reason", "must be UTF-8 text without control characters other than tab and newline")
	}
	if r.PID < 0 || r.PID > MaxPID {
		f.add("report.pid", "must be 0 to %d, got %d", MaxPID, r.PID)
	}
	checkOneOf(&f, "report.accel", r.Accel, Accels)
	if len(r.Cgroup) > MaxCgroups {
		f.add("report.cgroup", "at most %d controllers, got %d", MaxCgroups, len(r.Cgroup))
	} else {
		keys := make([]string, 0, len(r.Cgroup))
		for k := range r.Cgroup {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			path := spec.FieldPath("report.cgroup", k)
			if !controllerRE.MatchString(k) {
				f.add(path, "a controller name is 1-32 characters of a-z, 0-9 and '_', starting with a letter")
			} else if reason := checkAbsPath(r.Cgroup[k]); reason != "" {
				f.add(path, "%s", reason)
			}
		}
	}
	checkTime(&f, "report.started_at", r.StartedAt, now)
	if g := r.Guest; g != nil {
		checkGuest(&f, g)
	}
	checkTime(&f, "report.agent_received", r.AgentReceived, now)
	checkTime(&f, "report.process_started", r.ProcessStarted, now)
	checkTime(&f, "report.guest_ready", r.GuestReady, now)
	checkTime(&f, "report.suspended", r.Suspended, now)
	checkTook(&f, "report.suspend_took", r.SuspendTook)
	checkRange(&f, "report.suspend_bytes", r.SuspendBytes, int64(MaxNodeMemory), "64Ti")
	checkTime(&f, "report.resumed", r.Resumed, now)
	checkTook(&f, "report.resume_took", r.ResumeTook)
	if c := r.CPUSeconds; math.IsNaN(c) || math.IsInf(c, 0) || c < 0 || c > MaxCPUSeconds {
		f.add("report.cpu_seconds", "must be a finite number from 0 to %g, got %g", MaxCPUSeconds, c)
	}
	checkRange(&f, "report.move_bytes", r.MoveBytes, int64(MaxNodeDisk), "1024Ti")
	checkRange(&f, "report.move_done", r.MoveDone, int64(MaxNodeDisk), "1024Ti")
	if r.MoveDone > r.MoveBytes {
		f.add("report.move_done", "must not exceed move_bytes (%d), got %d", r.MoveBytes, r.MoveDone)
	}
	if r.Applied != nil {
		checkQuantum(&f, "report.applied", *r.Applied)
	}
	return f
}

// checkQuantum adds the problems of a quantum an agent sent, under path.
func checkQuantum(f *fieldErrs, path string, q model.Quantum) {
	if err := spec.ValidateQuantum(q); err != nil {
		var fe *spec.FieldErrors
		if !errors.As(err, &fe) {
			f.add(path, "%s", err.Error())
			return
		}
		for _, e := range fe.Fields() {
			f.add(path+"."+strings.TrimPrefix(e.Field, "quantum."), "%s", e.Reason)
		}
	}
}

// ValidateMigrationReport checks an agent's report on a live migration.
func ValidateMigrationReport(r api.MigrationReport, now time.Time) []api.FieldError {
	var f fieldErrs
	if reason := CheckWorkspaceID(r.ID); reason != "" {
		f.add("migration.id", "%s", reason)
	}
	if r.Since.IsZero() {
		f.add("migration.since", "required: the migration's start (status.migration.since)")
	}
	checkTime(&f, "migration.since", r.Since, now)
	says := 0
	if r.Endpoint != nil {
		says++
		if _, _, err := net.SplitHostPort(r.Endpoint.Memory); err != nil || len(r.Endpoint.Memory) > 300 {
			f.add("migration.endpoint.memory", "want host:port, got %s", quoteShort(r.Endpoint.Memory))
		}
		if !strings.HasPrefix(r.Endpoint.Disk, "nbd://") || len(r.Endpoint.Disk) > 300 || !isText(r.Endpoint.Disk, false) {
			f.add("migration.endpoint.disk", "want an NBD URI (nbd://host:port/export), got %s", quoteShort(r.Endpoint.Disk))
		}
	}
	if p := r.Progress; p != nil {
		says++
		checkOneOf(&f, "migration.progress.phase", p.Phase, []string{"disk", "memory", "switchover"})
		for _, v := range []struct {
			name string
			n    int64
		}{{"disk_total", p.DiskTotal}, {"disk_done", p.DiskDone}, {"memory_total", p.MemoryTotal},
			{"memory_transferred", p.MemoryTransferred}, {"memory_remaining", p.MemoryRemaining}, {"dirty_rate", p.DirtyRate}} {
			checkRange(&f, "migration.progress."+v.name, v.n, int64(MaxNodeDisk), "1024Ti")
		}
		if p.Passes < 0 {
			f.add("migration.progress.passes", "must not be negative, got %d", p.Passes)
		}
	}
	if r.Done {
		says++
	}
	if r.Failed != "" {
		says++
		switch {
		case len(r.Failed) > MaxReason:
			f.add("migration.failed", "at most %d bytes, got %d", MaxReason, len(r.Failed))
		case !isText(r.Failed, true):
			f.add("migration.failed", "must be UTF-8 text without control characters other than tab and newline")
		}
	}
	if says != 1 {
		f.add("migration", "say exactly one of endpoint, progress, done, failed (got %d)", says)
	}
	checkTook(&f, "migration.total", r.Total)
	checkTook(&f, "migration.downtime", r.Downtime)
	checkRange(&f, "migration.memory_bytes", r.MemoryBytes, int64(MaxNodeDisk), "1024Ti")
	checkRange(&f, "migration.disk_bytes", r.DiskBytes, int64(MaxNodeDisk), "1024Ti")
	return f
}

func isAgentState(s model.State) bool {
	for _, a := range AgentStates {
		if s == a {
			return true
		}
	}
	return false
}

func checkGuest(f *fieldErrs, g *model.GuestInfo) {
	if g.VCPUs < 0 || g.VCPUs > MaxGuestVCPUs {
		f.add("report.guest.vcpus", "must be 0 to %d, got %d", MaxGuestVCPUs, g.VCPUs)
	}
	checkRange(f, "report.guest.memory_mib", g.MemoryMiB, int64(MaxNodeMemory/model.MiB), "")
	if len(g.Addresses) > MaxAddresses {
		f.add("report.guest.addresses", "at most %d addresses, got %d", MaxAddresses, len(g.Addresses))
	} else {
		for i, a := range g.Addresses {
			if !isIPOrPrefix(a) {
				f.add(fmt.Sprintf("report.guest.addresses[%d]", i), "want an IP address or a CIDR such as 10.0.2.15/24, got %s", quoteShort(a))
			}
		}
	}
	checkText(f, "report.guest.hostname", g.Hostname, maxTextLen)
	checkText(f, "report.guest.kernel", g.Kernel, maxTextLen)
	checkRange(f, "report.guest.disk_bytes", g.DiskBytes, int64(MaxNodeDisk), "1024Ti")
	if u := g.UptimeS; math.IsNaN(u) || math.IsInf(u, 0) || u < 0 || u > MaxGuestUptimeS {
		f.add("report.guest.uptime_s", "must be a finite number from 0 to %g, got %g", MaxGuestUptimeS, u)
	}
	checkText(f, "report.guest.agent", g.Agent, maxVersionLen)
}

func isIPOrPrefix(s string) bool {
	if len(s) > 64 {
		return false
	}
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// CheckWorkspaceID returns why id is not a workspace ID, or "".
func CheckWorkspaceID(id string) string {
	switch {
	case id == "":
		return "required"
	case len(id) > MaxIDLen || !idRE.MatchString(id):
		return fmt.Sprintf("want 1-%d characters of letters, digits, '.', '_' and '-', got %s", MaxIDLen, quoteShort(id))
	}
	return ""
}

// ValidateProjectsPost checks POST /projects.
func ValidateProjectsPost(p api.ProjectsPost) []api.FieldError {
	var f fieldErrs
	if !NameRE.MatchString(p.Name) {
		f.add("name", "must be a lower-case name")
	}
	return f
}

// TokenRoles are the roles POST /tokens may create ("" is user); node
// tokens come from registering a host.
var TokenRoles = []string{"user", "admin", "join"}

// ValidateTokensPost checks POST /tokens: the project, the role, a TTL
// that is not negative nor longer than MaxTokenTTL, and max_hosts (join
// tokens only, at most MaxJoinHosts). Finer rules (a join token's longest
// TTL) are the handler's.
func ValidateTokensPost(t api.TokensPost) []api.FieldError {
	var f fieldErrs
	if !NameRE.MatchString(t.Project) {
		f.add("project", "must be a lower-case name")
	}
	checkOneOf(&f, "role", t.Role, TokenRoles)
	if t.TTL < 0 || t.TTL > MaxTokenTTL {
		f.add("ttl", "must be 0 (default) to %v, got %v", MaxTokenTTL, t.TTL)
	}
	switch {
	case t.MaxHosts < 0 || t.MaxHosts > MaxJoinHosts:
		f.add("max_hosts", "must be 0 (no bound) to %d, got %d", MaxJoinHosts, t.MaxHosts)
	case t.MaxHosts > 0 && t.Role != "join":
		f.add("max_hosts", "only for join tokens")
	}
	return f
}

// ValidateImage checks an image record as POST /images receives it, all
// but its files' content: names, formats, hashes, sizes and the shape of
// each path (absolute, clean, no ".."). Where the paths lead is
// validImage's to check.
func ValidateImage(img model.Image, now time.Time) []api.FieldError {
	var f fieldErrs
	if !NameRE.MatchString(img.Name) {
		f.add("name", "must be a lower-case name")
	}
	if img.Boot != "direct" && img.Boot != "firmware" {
		f.add("boot", `want "direct" or "firmware"`)
	}
	if img.Boot == "direct" && img.Kernel == nil {
		f.add("kernel", "direct boot needs a kernel")
	}
	if img.Initrd != nil && img.Kernel == nil {
		f.add("initrd", "an initrd needs a kernel")
	}
	if img.DiskFormat != "raw" && img.DiskFormat != "qcow2" {
		f.add("disk_format", `want "raw" or "qcow2"`)
	}
	checkText(&f, "cmdline", img.Cmdline, MaxCmdlineLen)
	checkRange(&f, "min_disk", int64(img.MinDisk), int64(MaxImageMinDisk), "1024Ti")
	checkTime(&f, "created_at", img.CreatedAt, now)
	for _, file := range imageFiles(img) {
		if file.f == nil {
			continue
		}
		if reason := checkAbsPath(file.f.Path); reason != "" {
			f.add(file.name+".path", "%s", reason)
		}
		if !sha256RE.MatchString(file.f.SHA256) {
			f.add(file.name+".sha256", "want 64 lower-case hex digits")
		}
		checkRange(&f, file.name+".size", file.f.Size, int64(MaxImageFile), "1024Ti")
	}
	return f
}

type namedFile struct {
	name string
	f    *model.ImageFile
}

func imageFiles(img model.Image) []namedFile {
	return []namedFile{{"disk", &img.Disk}, {"kernel", img.Kernel}, {"initrd", img.Initrd}}
}

// checkAbsPath returns why p is not an absolute, clean path without "..",
// or "".
func checkAbsPath(p string) string {
	switch {
	case p == "":
		return "required"
	case len(p) > MaxPathLen:
		return fmt.Sprintf("at most %d bytes, got %d", MaxPathLen, len(p))
	case !isText(p, false):
		return "must be text without control characters"
	case !filepath.IsAbs(p):
		return fmt.Sprintf("want an absolute path, got %s", quoteShort(p))
	case filepath.Clean(p) != p || hasDotDot(p):
		return fmt.Sprintf("want a clean path without '..', '.' or '//', got %s", quoteShort(p))
	}
	return ""
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

func checkRange(f *fieldErrs, field string, v, limit int64, unit string) {
	if v >= 0 && v <= limit {
		return
	}
	bound := strconv.FormatInt(limit, 10)
	if unit != "" {
		bound = unit
	}
	f.add(field, "must be 0 to %s, got %d", bound, v)
}

func checkTook(f *fieldErrs, field string, d model.Duration) {
	if d < 0 || d > MaxTook {
		f.add(field, "must be 0 to %v, got %v", MaxTook, d)
	}
}

func checkOneOf(f *fieldErrs, field, v string, set []string) {
	if v == "" {
		return
	}
	for _, s := range set {
		if v == s {
			return
		}
	}
	f.add(field, "want one of %s, got %s", strings.Join(set, ", "), quoteShort(v))
}

func checkText(f *fieldErrs, field, v string, limit int) {
	switch {
	case len(v) > limit:
		f.add(field, "at most %d bytes, got %d", limit, len(v))
	case !isText(v, false):
		f.add(field, "must be UTF-8 text on one line, without control characters")
	}
}

// checkTime accepts the zero time (unset) or a time from MinTime to
// MaxClockAhead after now.
func checkTime(f *fieldErrs, field string, t, now time.Time) {
	if t.IsZero() {
		return
	}
	if latest := now.Add(MaxClockAhead); t.Before(MinTime) || t.After(latest) {
		f.add(field, "must be from %s to an hour from now (%s), got %s", MinTime.Format(time.RFC3339),
			latest.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339Nano))
	}
}

// isText reports whether s is valid UTF-8 without control characters
// (tab, and with multiline newlines, excepted).
func isText(s string, multiline bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '\t':
		case multiline && (r == '\n' || r == '\r'):
		case unicode.IsControl(r):
			return false
		}
	}
	return true
}

// quoteShort quotes s, cut to 40 bytes.
func quoteShort(s string) string {
	const limit = 40
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
}
