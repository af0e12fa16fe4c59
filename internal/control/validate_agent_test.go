package control

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

var vnow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// names returns the fields of fe.
func names(fe []api.FieldError) []string {
	var out []string
	for _, f := range fe {
		out = append(out, f.Field)
	}
	return out
}

// wantFields checks that fe names exactly want (none: fe is empty).
func wantFields(t *testing.T, fe []api.FieldError, want ...string) {
	t.Helper()
	got := names(fe)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("fields %q, want %q (%+v)", got, want, fe)
	}
	for _, f := range fe {
		if f.Reason == "" {
			t.Fatalf("%s: no reason", f.Field)
		}
	}
}

func goodNode() model.Node {
	return model.Node{Name: "n1", Address: "10.0.0.1:7443", Labels: map[string]string{"zone": "eu-1", "example.com/gpu": "a100"},
		Capacity: model.Resources{MilliCPU: 64000, Memory: 256 * model.GiB, Disk: 2 * model.TiB, Bandwidth: 10 * model.GiB},
		Accel:    "kvm", Hypervisor: "qemu 7.2.22", Cgroup: "v2", AgentVersion: "v0.4.1-3-gabc+dirty",
		RegisteredAt: vnow.Add(-time.Hour), LastHeartbeat: vnow,
		Measured: &model.HostTimes{Boot: []model.Duration{model.Duration(2 * time.Second)}, Suspend: []int64{1 << 30}, Resume: []int64{2 << 30}}}
}

func TestValidateNode(t *testing.T) {
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[strings.Repeat("k", 1+i%60)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	tests := []struct {
		name  string
		edit  func(n *model.Node)
		field []string
	}{
		{"good", func(n *model.Node) {}, nil},
		{"zero node but a name", func(n *model.Node) { *n = model.Node{Name: "n1"} }, nil},
		{"hostname address", func(n *model.Node) { n.Address = "host-1.example.org" }, nil},
		{"ipv6 address", func(n *model.Node) { n.Address = "[fd00::1]:443" }, nil},
		{"at the ceilings", func(n *model.Node) {
			n.Capacity = model.Resources{MilliCPU: MaxNodeMilliCPU, Memory: MaxNodeMemory, Disk: MaxNodeDisk, Bandwidth: MaxNodeBandwidth}
		}, nil},
		{"64 labels", func(n *model.Node) {
			n.Labels = map[string]string{}
			for k := range many {
				if len(n.Labels) < MaxLabels {
					n.Labels[k] = "v"
				}
			}
		}, nil},
		{"no name", func(n *model.Node) { n.Name = "" }, []string{"node.name"}},
		{"upper-case name", func(n *model.Node) { n.Name = "N1" }, []string{"node.name"}},
		{"address with a path", func(n *model.Node) { n.Address = "http://x/y" }, []string{"node.address"}},
		{"address port 0", func(n *model.Node) { n.Address = "x:0" }, []string{"node.address"}},
		{"address too long", func(n *model.Node) { n.Address = strings.Repeat("a", 300) }, []string{"node.address"}},
		{"65 labels", func(n *model.Node) { n.Labels = many }, []string{"node.labels"}},
		{"empty label key", func(n *model.Node) { n.Labels = map[string]string{"": "v"} }, []string{`node.labels[""]`}},
		{"long label key", func(n *model.Node) { n.Labels = map[string]string{strings.Repeat("k", 64): "v"} }, []string{"node.labels." + strings.Repeat("k", 64)}},
		{"long label value", func(n *model.Node) { n.Labels = map[string]string{"k": strings.Repeat("v", 64)} }, []string{"node.labels.k"}},
		{"label value with a space", func(n *model.Node) { n.Labels = map[string]string{"k": "a b"} }, []string{"node.labels.k"}},
		{"reserved label", func(n *model.Node) { n.Labels = map[string]string{"vgrid.io/host": "n2"} }, []string{`node.labels["vgrid.io/host"]`}},
		{"negative cpu", func(n *model.Node) { n.Capacity.MilliCPU = -1 }, []string{"node.capacity.millicpu"}},
		{"max int64 cpu", func(n *model.Node) { n.Capacity.MilliCPU = math.MaxInt64 }, []string{"node.capacity.millicpu"}},
		{"cpu over the ceiling", func(n *model.Node) { n.Capacity.MilliCPU = MaxNodeMilliCPU + 1 }, []string{"node.capacity.millicpu"}},
		{"negative memory", func(n *model.Node) { n.Capacity.Memory = -1 }, []string{"node.capacity.memory"}},
		{"memory over the ceiling", func(n *model.Node) { n.Capacity.Memory = MaxNodeMemory + 1 }, []string{"node.capacity.memory"}},
		{"disk over the ceiling", func(n *model.Node) { n.Capacity.Disk = MaxNodeDisk + 1 }, []string{"node.capacity.disk"}},
		{"negative bandwidth", func(n *model.Node) { n.Capacity.Bandwidth = -1 }, []string{"node.capacity.bandwidth"}},
		{"unknown accel", func(n *model.Node) { n.Accel = "hvf" }, []string{"node.accel"}},
		{"hypervisor with a newline", func(n *model.Node) { n.Hypervisor = "qemu\n7" }, []string{"node.hypervisor"}},
		{"unknown cgroup", func(n *model.Node) { n.Cgroup = "v3" }, []string{"node.cgroup"}},
		{"long agent version", func(n *model.Node) { n.AgentVersion = strings.Repeat("1", 65) }, []string{"node.agent_version"}},
		{"registered in year 1", func(n *model.Node) { n.RegisteredAt = time.Date(1, 6, 1, 0, 0, 0, 0, time.UTC) }, []string{"node.registered_at"}},
		{"heartbeat in 9999", func(n *model.Node) { n.LastHeartbeat = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"node.last_heartbeat"}},
		{"heartbeat 2h ahead", func(n *model.Node) { n.LastHeartbeat = vnow.Add(2 * time.Hour) }, []string{"node.last_heartbeat"}},
		{"9 boot samples", func(n *model.Node) { n.Measured.Boot = make([]model.Duration, 9) }, []string{"node.measured.boot"}},
		{"zero boot sample", func(n *model.Node) { n.Measured.Boot = []model.Duration{0} }, []string{"node.measured.boot[0]"}},
		{"negative rate", func(n *model.Node) { n.Measured.Suspend = []int64{-1} }, []string{"node.measured.suspend_rates[0]"}},
		{"9 resume rates", func(n *model.Node) { n.Measured.Resume = make([]int64, 9) }, []string{"node.measured.resume_rates"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := goodNode()
			tt.edit(&n)
			wantFields(t, ValidateNode(n, vnow), tt.field...)
		})
	}
}

func TestValidRegistrationAndHeartbeat(t *testing.T) {
	wantFields(t, validRegistration(goodNode(), vnow))
	wantFields(t, validRegistration(model.Node{Name: "n1"}, vnow), "node.capacity.millicpu", "node.capacity.memory")
	wantFields(t, validHeartbeat("n1", model.Node{}, vnow))
	wantFields(t, validHeartbeat("n1", goodNode(), vnow))
	wantFields(t, validHeartbeat("n2", goodNode(), vnow), "node.name")
	wantFields(t, validHeartbeat("n1", model.Node{Capacity: model.Resources{MilliCPU: 1000}}, vnow), "node.capacity.memory")
}

func goodReport() api.AgentReport {
	t0 := vnow.Add(-time.Minute)
	return api.AgentReport{ID: "w0123456789ab", Generation: 3, State: model.StateRunning, Reason: "line 1\n\tline 2",
		PID: 4242, Accel: "kvm", Cgroup: map[string]string{"cpu": "/sys/fs/cgroup/vgrid/w0123456789ab", "memory": "/sys/fs/cgroup/memory/vgrid/x"},
		StartedAt: t0, Guest: &model.GuestInfo{VCPUs: 2, MemoryMiB: 512, Addresses: []string{"10.0.2.15/24", "fd00::2/64", "192.168.1.1"},
			Hostname: "demo", Kernel: "6.1.0-18-amd64", DiskBytes: int64(model.GiB), UptimeS: 3.5, Context: true, Agent: "v1"},
		AgentReceived: t0, ProcessStarted: t0, GuestReady: vnow, Suspended: t0, SuspendTook: model.Duration(time.Second), SuspendBytes: 1 << 29,
		Resumed: vnow, ResumeTook: model.Duration(time.Second), CPUSeconds: 12.5}
}

func TestValidateReport(t *testing.T) {
	year := func(y int) time.Time { return time.Date(y, 3, 1, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		name  string
		edit  func(r *api.AgentReport)
		field []string
	}{
		{"good", func(r *api.AgentReport) {}, nil},
		{"minimal", func(r *api.AgentReport) { *r = api.AgentReport{ID: "w1", State: model.StateStopped} }, nil},
		{"zero times", func(r *api.AgentReport) { r.StartedAt, r.GuestReady = time.Time{}, time.Time{} }, nil},
		{"an hour ahead", func(r *api.AgentReport) { r.GuestReady = vnow.Add(time.Hour) }, nil},
		{"reason at the bound", func(r *api.AgentReport) { r.Reason = strings.Repeat("x", MaxReason) }, nil},
		{"no id", func(r *api.AgentReport) { r.ID = "" }, []string{"report.id"}},
		{"long id", func(r *api.AgentReport) { r.ID = strings.Repeat("w", MaxIDLen+1) }, []string{"report.id"}},
		{"id with a slash", func(r *api.AgentReport) { r.ID = "../w1" }, []string{"report.id"}},
		{"negative generation", func(r *api.AgentReport) { r.Generation = -1 }, []string{"report.generation"}},
		{"state Banana", func(r *api.AgentReport) { r.State = "Banana" }, []string{"report.state"}},
		{"no state", func(r *api.AgentReport) { r.State = "" }, []string{"report.state"}},
		{"state in lower case", func(r *api.AgentReport) { r.State = "running" }, []string{"report.state"}},
		{"state Pending", func(r *api.AgentReport) { r.State = model.StatePending }, []string{"report.state"}},
		{"state Scheduled", func(r *api.AgentReport) { r.State = model.StateScheduled }, []string{"report.state"}},
		{"reason of 900 KB", func(r *api.AgentReport) { r.Reason = strings.Repeat("x", 900<<10) }, []string{"report.reason"}},
		{"reason just over", func(r *api.AgentReport) { r.Reason = strings.Repeat("x", MaxReason+1) }, []string{"report.reason"}},
		{"reason with NUL", func(r *api.AgentReport) { r.Reason = "a\x00b" }, []string{"report.reason"}},
		{"reason with ESC", func(r *api.AgentReport) { r.Reason = "\x1b[31mred" }, []string{"report.reason"}},
		{"reason not UTF-8", func(r *api.AgentReport) { r.Reason = "\xff" }, []string{"report.reason"}},
		{"negative pid", func(r *api.AgentReport) { r.PID = -1 }, []string{"report.pid"}},
		{"huge pid", func(r *api.AgentReport) { r.PID = MaxPID + 1 }, []string{"report.pid"}},
		{"unknown accel", func(r *api.AgentReport) { r.Accel = "banana" }, []string{"report.accel"}},
		{"17 cgroups", func(r *api.AgentReport) {
			r.Cgroup = map[string]string{}
			for i := range 17 {
				r.Cgroup[string(rune('a'+i))] = "/x"
			}
		}, []string{"report.cgroup"}},
		{"cgroup controller", func(r *api.AgentReport) { r.Cgroup = map[string]string{"CPU!": "/x"} }, []string{`report.cgroup["CPU!"]`}},
		{"relative cgroup", func(r *api.AgentReport) { r.Cgroup = map[string]string{"cpu": "x"} }, []string{"report.cgroup.cpu"}},
		{"cgroup with ..", func(r *api.AgentReport) { r.Cgroup = map[string]string{"cpu": "/sys/../etc"} }, []string{"report.cgroup.cpu"}},
		{"started in year 1", func(r *api.AgentReport) { r.StartedAt = year(1) }, []string{"report.started_at"}},
		{"started in 9999", func(r *api.AgentReport) { r.StartedAt = year(9999) }, []string{"report.started_at"}},
		{"received in 1999", func(r *api.AgentReport) { r.AgentReceived = year(1999) }, []string{"report.agent_received"}},
		{"process started in 9999", func(r *api.AgentReport) { r.ProcessStarted = year(9999) }, []string{"report.process_started"}},
		{"guest ready 2h ahead", func(r *api.AgentReport) { r.GuestReady = vnow.Add(2 * time.Hour) }, []string{"report.guest_ready"}},
		{"suspended in year 1", func(r *api.AgentReport) { r.Suspended = year(1) }, []string{"report.suspended"}},
		{"resumed in 9999", func(r *api.AgentReport) { r.Resumed = year(9999) }, []string{"report.resumed"}},
		{"negative suspend took", func(r *api.AgentReport) { r.SuspendTook = -1 }, []string{"report.suspend_took"}},
		{"suspend took 2 days", func(r *api.AgentReport) { r.SuspendTook = model.Duration(48 * time.Hour) }, []string{"report.suspend_took"}},
		{"negative suspend bytes", func(r *api.AgentReport) { r.SuspendBytes = -1 }, []string{"report.suspend_bytes"}},
		{"suspend bytes 2^63-1", func(r *api.AgentReport) { r.SuspendBytes = math.MaxInt64 }, []string{"report.suspend_bytes"}},
		{"negative resume took", func(r *api.AgentReport) { r.ResumeTook = -1 }, []string{"report.resume_took"}},
		{"negative cpu seconds", func(r *api.AgentReport) { r.CPUSeconds = -1 }, []string{"report.cpu_seconds"}},
		{"NaN cpu seconds", func(r *api.AgentReport) { r.CPUSeconds = math.NaN() }, []string{"report.cpu_seconds"}},
		{"infinite cpu seconds", func(r *api.AgentReport) { r.CPUSeconds = math.Inf(1) }, []string{"report.cpu_seconds"}},
		{"huge cpu seconds", func(r *api.AgentReport) { r.CPUSeconds = 1e300 }, []string{"report.cpu_seconds"}},
		{"guest vcpus", func(r *api.AgentReport) { r.Guest.VCPUs = -2 }, []string{"report.guest.vcpus"}},
		{"guest memory", func(r *api.AgentReport) { r.Guest.MemoryMiB = math.MaxInt64 }, []string{"report.guest.memory_mib"}},
		{"65 addresses", func(r *api.AgentReport) { r.Guest.Addresses = make([]string, 65) }, []string{"report.guest.addresses"}},
		{"bad address", func(r *api.AgentReport) { r.Guest.Addresses = []string{"10.0.2.15", "10.0.2/24"} }, []string{"report.guest.addresses[1]"}},
		{"hostname with a newline", func(r *api.AgentReport) { r.Guest.Hostname = "a\nb" }, []string{"report.guest.hostname"}},
		{"long kernel", func(r *api.AgentReport) { r.Guest.Kernel = strings.Repeat("k", 257) }, []string{"report.guest.kernel"}},
		{"negative disk", func(r *api.AgentReport) { r.Guest.DiskBytes = -1 }, []string{"report.guest.disk_bytes"}},
		{"NaN uptime", func(r *api.AgentReport) { r.Guest.UptimeS = math.NaN() }, []string{"report.guest.uptime_s"}},
		{"negative uptime", func(r *api.AgentReport) { r.Guest.UptimeS = -1 }, []string{"report.guest.uptime_s"}},
		{"long guest agent", func(r *api.AgentReport) { r.Guest.Agent = strings.Repeat("v", 65) }, []string{"report.guest.agent"}},
		{"several at once", func(r *api.AgentReport) { r.State, r.PID, r.CPUSeconds = "x", -1, -1 },
			[]string{"report.state", "report.pid", "report.cpu_seconds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goodReport()
			tt.edit(&r)
			wantFields(t, ValidateReport(r, vnow), tt.field...)
		})
	}
}

func TestValidateAdminBodies(t *testing.T) {
	wantFields(t, ValidateProjectsPost(api.ProjectsPost{Name: "beta"}))
	wantFields(t, ValidateProjectsPost(api.ProjectsPost{Name: "Beta"}), "name")
	wantFields(t, ValidateProjectsPost(api.ProjectsPost{Name: strings.Repeat("b", 64)}), "name")
	tokens := []struct {
		tok   api.TokensPost
		field []string
	}{
		{api.TokensPost{Project: "p"}, nil},
		{api.TokensPost{Project: "p", Role: "join", TTL: model.Duration(time.Hour), MaxHosts: 3}, nil},
		{api.TokensPost{Project: "p", Role: "admin"}, nil},
		{api.TokensPost{Project: "P"}, []string{"project"}},
		{api.TokensPost{Project: "p", Role: "node"}, []string{"role"}},
		{api.TokensPost{Project: "p", Role: "root"}, []string{"role"}},
		{api.TokensPost{Project: "p", TTL: -1}, []string{"ttl"}},
		{api.TokensPost{Project: "p", TTL: model.Duration(math.MaxInt64)}, []string{"ttl"}},
		{api.TokensPost{Project: "p", Role: "join", MaxHosts: -1}, []string{"max_hosts"}},
		{api.TokensPost{Project: "p", Role: "join", MaxHosts: MaxJoinHosts + 1}, []string{"max_hosts"}},
		{api.TokensPost{Project: "p", MaxHosts: 1}, []string{"max_hosts"}},
	}
	for _, tt := range tokens {
		wantFields(t, ValidateTokensPost(tt.tok), tt.field...)
	}
}

func goodImage() model.Image {
	f := func(p string) *model.ImageFile {
		return &model.ImageFile{Path: p, SHA256: strings.Repeat("ab", 32), Size: 10}
	}
	return model.Image{Name: "vgrid-guest", Boot: "direct", Disk: *f("/var/lib/vgrid/images/g/rootfs.img"), DiskFormat: "raw",
		Kernel: f("/var/lib/vgrid/images/g/vmlinux"), Initrd: f("/var/lib/vgrid/images/g/initrd.img"), Cmdline: "console=ttyS0 quiet",
		MinDisk: 256 * model.MiB, CreatedAt: vnow}
}

func TestValidateImage(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(i *model.Image)
		field []string
	}{
		{"good", func(i *model.Image) {}, nil},
		{"firmware", func(i *model.Image) { i.Boot, i.Kernel, i.Initrd, i.Cmdline = "firmware", nil, nil, "" }, nil},
		{"name", func(i *model.Image) { i.Name = "Guest Image" }, []string{"name"}},
		{"boot", func(i *model.Image) { i.Boot = "uefi" }, []string{"boot"}},
		{"direct without kernel", func(i *model.Image) { i.Kernel, i.Initrd = nil, nil }, []string{"kernel"}},
		{"initrd without kernel", func(i *model.Image) { i.Boot, i.Kernel = "firmware", nil }, []string{"initrd"}},
		{"format", func(i *model.Image) { i.DiskFormat = "vmdk" }, []string{"disk_format"}},
		{"cmdline with a newline", func(i *model.Image) { i.Cmdline = "a\nb" }, []string{"cmdline"}},
		{"long cmdline", func(i *model.Image) { i.Cmdline = strings.Repeat("x", MaxCmdlineLen+1) }, []string{"cmdline"}},
		{"negative min disk", func(i *model.Image) { i.MinDisk = -1 }, []string{"min_disk"}},
		{"created in 9999", func(i *model.Image) { i.CreatedAt = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"created_at"}},
		{"no disk path", func(i *model.Image) { i.Disk.Path = "" }, []string{"disk.path"}},
		{"relative disk", func(i *model.Image) { i.Disk.Path = "rootfs.img" }, []string{"disk.path"}},
		{"disk with ..", func(i *model.Image) { i.Disk.Path = "/var/lib/vgrid/images/../../../etc/shadow" }, []string{"disk.path"}},
		{"disk with //", func(i *model.Image) { i.Disk.Path = "/var/lib//vgrid" }, []string{"disk.path"}},
		{"disk with NUL", func(i *model.Image) { i.Disk.Path = "/var/lib/x\x00" }, []string{"disk.path"}},
		{"short sha256", func(i *model.Image) { i.Kernel.SHA256 = "abc" }, []string{"kernel.sha256"}},
		{"upper-case sha256", func(i *model.Image) { i.Initrd.SHA256 = strings.Repeat("AB", 32) }, []string{"initrd.sha256"}},
		{"non-hex sha256", func(i *model.Image) { i.Disk.SHA256 = strings.Repeat("zz", 32) }, []string{"disk.sha256"}},
		{"negative size", func(i *model.Image) { i.Disk.Size = -1 }, []string{"disk.size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := goodImage()
			tt.edit(&img)
			wantFields(t, ValidateImage(img, vnow), tt.field...)
		})
	}
}

// TestImageFilesOnlyInsideTheImageDirectories covers resolveImageFile
// and validImage on a real directory tree.
func TestImageFilesOnlyInsideTheImageDirectories(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "images")
	sibling := filepath.Join(base, "images-other") // shares the prefix "images"
	for _, d := range []string{filepath.Join(dir, "g"), sibling} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "g", "disk.img"), "0123456789")
	write(filepath.Join(sibling, "disk.img"), "0123456789")
	link(filepath.Join(dir, "g", "disk.img"), filepath.Join(dir, "g", "inner"))
	link("../g/disk.img", filepath.Join(dir, "g", "relative"))
	link("/etc/passwd", filepath.Join(dir, "g", "passwd"))
	link(filepath.Join(sibling, "disk.img"), filepath.Join(dir, "g", "sibling"))
	link(filepath.Join(base, "images"), filepath.Join(base, "alias")) // the image directory under another name
	link("/dev/null", filepath.Join(dir, "g", "null"))
	roots := []string{resolvedDir(dir)}
	tests := []struct {
		path string
		ok   bool
	}{
		{filepath.Join(dir, "g", "disk.img"), true},
		{filepath.Join(dir, "g", "inner"), true},
		{filepath.Join(dir, "g", "relative"), true},
		{filepath.Join(base, "alias", "g", "disk.img"), true},
		{filepath.Join(dir, "g", "passwd"), false},
		{filepath.Join(dir, "g", "sibling"), false},
		{filepath.Join(sibling, "disk.img"), false},
		{filepath.Join(dir, "g", "null"), false},
		{filepath.Join(dir, "g"), false},
		{dir, false},
		{filepath.Join(dir, "g", "missing"), false},
		{dir + "/g/../g/disk.img", false},
		{"/etc/shadow", false},
		{"g/disk.img", false},
	}
	for _, tt := range tests {
		_, _, err := resolveImageFile(tt.path, roots)
		if (err == nil) != tt.ok {
			t.Errorf("resolveImageFile(%s): %v, want ok %v", tt.path, err, tt.ok)
		}
	}
	if _, _, err := resolveImageFile(filepath.Join(dir, "g", "disk.img"), nil); err == nil {
		t.Error("a file is taken with no image directory")
	}

	img := model.Image{Name: "g", Boot: "firmware", DiskFormat: "raw",
		Disk: model.ImageFile{Path: filepath.Join(dir, "g", "disk.img"), SHA256: strings.Repeat("0", 64), Size: 10}}
	if err := validImage(img, roots, vnow); err != nil {
		t.Fatalf("a good image: %v", err)
	}
	for _, c := range []struct {
		edit  func(i *model.Image)
		field string
	}{
		{func(i *model.Image) { i.Disk.Path = filepath.Join(dir, "g", "passwd") }, "disk.path"},
		{func(i *model.Image) { i.Disk.Size = 11 }, "disk.size"},
	} {
		bad := img
		c.edit(&bad)
		err := validImage(bad, roots, vnow)
		ce, ok := err.(*Error)
		if !ok || ce.Kind != KindInvalid || len(ce.Fields) != 1 || ce.Fields[0].Field != c.field {
			t.Errorf("validImage: %v, want %s", err, c.field)
		}
	}
	if err, ok := validImage(img, nil, vnow).(*Error); !ok || len(err.Fields) != 1 || err.Fields[0].Field != "disk.path" {
		t.Errorf("no image directory: %v, want disk.path refused", err)
	}
}
