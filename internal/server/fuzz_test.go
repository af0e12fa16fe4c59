package server

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
)

// The decoders of the agent protocol and the admin bodies, fed arbitrary
// bytes: decodeStrict and the validators never panic; a refusal is a 400
// naming at least one field; what both accept keeps the validators'
// invariants and survives a round trip through JSON unchanged. The seed
// corpus (testdata/fuzz/<target>) holds the hostile cases of issue 7, item
// 10, cut to just past each bound.

var fuzzNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// refusal checks that err is a 400 naming a field.
func refusal(t *testing.T, err error) {
	t.Helper()
	var he *httpError
	if !errors.As(err, &he) {
		t.Fatalf("got %T %v, want an httpError", err, err)
	}
	if he.status != http.StatusBadRequest || he.code != api.CodeInvalid || he.msg == "" || len(he.fields) == 0 {
		t.Fatalf("refusal %d %s %q %+v, want a 400 naming a field", he.status, he.code, he.msg, he.fields)
	}
	for _, f := range he.fields {
		if f.Field == "" || f.Reason == "" {
			t.Fatalf("a field error without field or reason: %+v", he.fields)
		}
	}
}

// roundTrip checks that v, encoded and decoded strictly again, is the same
// (compared as JSON) and returns the copy.
func roundTrip[T any](t *testing.T, root string, v T) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %+v: %v", v, err)
	}
	var again T
	if err := decodeStrict(root, b, &again); err != nil {
		t.Fatalf("decode %s after a round trip: %v", b, err)
	}
	b2, _ := json.Marshal(again)
	if string(b2) != string(b) {
		t.Fatalf("round trip:\n%s\nbecame\n%s", b, b2)
	}
	return again
}

func inWindow(t time.Time) bool {
	return t.IsZero() || !t.Before(control.MinTime) && !t.After(fuzzNow.Add(control.MaxClockAhead))
}

func FuzzDecodeAgentReport(f *testing.F) {
	f.Add([]byte(`{"id":"w0123456789ab","generation":1,"state":"Running","pid":42,"accel":"kvm","cgroup":{"cpu":"/sys/fs/cgroup/vgrid/w1"},` +
		`"started_at":"2026-11-24T11:00:00Z","guest":{"vcpus":2,"memory_mib":512,"addresses":["10.0.2.15/24"],"uptime_s":1.5},"cpu_seconds":3.25}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r api.AgentReport
		if err := decodeStrict("report", data, &r); err != nil {
			refusal(t, err)
			return
		}
		if fe := control.ValidateReport(r, fuzzNow); len(fe) > 0 {
			for _, e := range fe {
				if e.Field == "" || e.Reason == "" {
					t.Fatalf("a field error without field or reason: %+v", fe)
				}
			}
			return
		}
		stateOK := false
		for _, s := range control.AgentStates {
			stateOK = stateOK || r.State == s
		}
		switch {
		case !stateOK:
			t.Fatalf("state %q accepted", r.State)
		case r.ID == "" || len(r.ID) > control.MaxIDLen:
			t.Fatalf("id %q accepted", r.ID)
		case len(r.Reason) > control.MaxReason:
			t.Fatalf("a reason of %d bytes accepted", len(r.Reason))
		case r.Generation < 0 || r.PID < 0 || r.PID > control.MaxPID || r.SuspendBytes < 0:
			t.Fatalf("negative numbers accepted: %+v", r)
		case math.IsNaN(r.CPUSeconds) || math.IsInf(r.CPUSeconds, 0) || r.CPUSeconds < 0:
			t.Fatalf("cpu seconds %v accepted", r.CPUSeconds)
		case len(r.Cgroup) > control.MaxCgroups:
			t.Fatalf("%d cgroups accepted", len(r.Cgroup))
		case r.SuspendTook < 0 || r.ResumeTook < 0:
			t.Fatalf("negative durations accepted")
		}
		for _, tm := range []time.Time{r.StartedAt, r.AgentReceived, r.ProcessStarted, r.GuestReady, r.Suspended, r.Resumed} {
			if !inWindow(tm) {
				t.Fatalf("time %v accepted", tm)
			}
		}
		if g := r.Guest; g != nil && (len(g.Addresses) > control.MaxAddresses || g.VCPUs < 0 || g.MemoryMiB < 0 || g.DiskBytes < 0 || !(g.UptimeS >= 0)) {
			t.Fatalf("guest %+v accepted", g)
		}
		again := roundTrip(t, "report", r)
		if fe := control.ValidateReport(again, fuzzNow); len(fe) > 0 {
			t.Fatalf("valid before a round trip, not after: %+v", fe)
		}
	})
}

func FuzzDecodeNode(f *testing.F) {
	f.Add([]byte(`{"node":{"name":"n1","address":"10.0.0.1:7443","labels":{"zone":"eu-1"},"capacity":{"millicpu":4000,"memory":"8Gi","disk":"100Gi","bandwidth":"1Gi"},` +
		`"accel":"kvm","hypervisor":"qemu 7.2.22","cgroup":"v2","agent_version":"v1","registered_at":"2026-11-24T11:00:00Z","last_heartbeat":"2026-11-24T12:00:00Z",` +
		`"measured":{"boot":["1.5s"],"suspend_rates":[1073741824],"resume_rates":[2147483648]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req api.NodesPost
		if err := decodeStrict("", data, &req); err != nil {
			refusal(t, err)
			return
		}
		n := req.Node
		if fe := control.ValidateNode(n, fuzzNow); len(fe) > 0 {
			return
		}
		c := n.Capacity
		switch {
		case !control.NameRE.MatchString(n.Name):
			t.Fatalf("name %q accepted", n.Name)
		case len(n.Labels) > control.MaxLabels:
			t.Fatalf("%d labels accepted", len(n.Labels))
		case c.MilliCPU < 0 || c.MilliCPU > control.MaxNodeMilliCPU || c.Memory < 0 || c.Memory > control.MaxNodeMemory ||
			c.Disk < 0 || c.Disk > control.MaxNodeDisk || c.Bandwidth < 0 || c.Bandwidth > control.MaxNodeBandwidth:
			t.Fatalf("capacity %+v accepted", c)
		case !inWindow(n.RegisteredAt) || !inWindow(n.LastHeartbeat):
			t.Fatalf("times %v %v accepted", n.RegisteredAt, n.LastHeartbeat)
		}
		for k, v := range n.Labels {
			if k == "" || len(k) > control.MaxLabelLen || len(v) > control.MaxLabelLen {
				t.Fatalf("label %q=%q accepted", k, v)
			}
		}
		if m := n.Measured; m != nil && (len(m.Boot) > model.MaxSamples || len(m.Suspend) > model.MaxSamples || len(m.Resume) > model.MaxSamples) {
			t.Fatalf("measurements %+v accepted", m)
		}
		// Sums over many hosts do not overflow.
		if total := c.MilliCPU * 1e6; total/1e6 != c.MilliCPU {
			t.Fatalf("capacity %d overflows a million hosts", c.MilliCPU)
		}
		again := roundTrip(t, "", req)
		if fe := control.ValidateNode(again.Node, fuzzNow); len(fe) > 0 {
			t.Fatalf("valid before a round trip, not after: %+v", fe)
		}
	})
}

// FuzzDecodeAdminBody feeds the same bytes to the three admin bodies:
// POST /projects, POST /tokens and POST /images (its fields; where image
// files lead is checked on disk, not here).
func FuzzDecodeAdminBody(f *testing.F) {
	f.Add([]byte(`{"name":"beta"}`))
	f.Add([]byte(`{"project":"beta","role":"join","ttl":"24h","max_hosts":3}`))
	f.Add([]byte(`{"name":"g","boot":"direct","disk":{"path":"/var/lib/vgrid/images/g/rootfs.img","sha256":"` +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `","size":10},"disk_format":"raw",` +
		`"kernel":{"path":"/var/lib/vgrid/images/g/vmlinux","sha256":"` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" +
		`","size":5},"cmdline":"console=ttyS0","min_disk":"256Mi","created_at":"2026-11-24T12:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p api.ProjectsPost
		if err := decodeStrict("", data, &p); err != nil {
			refusal(t, err)
		} else if len(control.ValidateProjectsPost(p)) == 0 {
			if !control.NameRE.MatchString(p.Name) {
				t.Fatalf("project %q accepted", p.Name)
			}
			roundTrip(t, "", p)
		}

		var tok api.TokensPost
		if err := decodeStrict("", data, &tok); err != nil {
			refusal(t, err)
		} else if len(control.ValidateTokensPost(tok)) == 0 {
			if tok.Role == RoleNode || tok.TTL < 0 || tok.MaxHosts < 0 || !control.NameRE.MatchString(tok.Project) {
				t.Fatalf("token request %+v accepted", tok)
			}
			roundTrip(t, "", tok)
		}

		var img model.Image
		if err := decodeStrict("", data, &img); err != nil {
			refusal(t, err)
		} else if len(control.ValidateImage(img, fuzzNow)) == 0 {
			for _, file := range []*model.ImageFile{&img.Disk, img.Kernel, img.Initrd} {
				if file == nil {
					continue
				}
				if len(file.Path) == 0 || file.Path[0] != '/' || file.Size < 0 || len(file.SHA256) != 64 {
					t.Fatalf("image file %+v accepted", file)
				}
			}
			if img.Boot == "direct" && img.Kernel == nil || img.MinDisk < 0 || !inWindow(img.CreatedAt) {
				t.Fatalf("image %+v accepted", img)
			}
			again := roundTrip(t, "", img)
			if fe := control.ValidateImage(again, fuzzNow); len(fe) > 0 {
				t.Fatalf("valid before a round trip, not after: %+v", fe)
			}
		}
	})
}
