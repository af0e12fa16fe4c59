package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseMountinfo(t *testing.T) {
	const hybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	const comounted = `25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
26 20 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
`
	const unified = `27 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	const escaped = `27 22 0:26 / /mnt/my\040cgroups rw shared:4 - cgroup2 cgroup2 rw
`
	tests := []struct {
		name    string
		in      string
		mode    Mode
		mounts  map[string]string
		wantErr bool
	}{
		{"hybrid", hybrid, ModeHybrid, map[string]string{
			"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct",
			"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}, false},
		{"v1 comounted", comounted, ModeV1, map[string]string{
			"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
			"memory": "/sys/fs/cgroup/memory"}, false},
		{"v2", unified, ModeV2, map[string]string{"unified": "/sys/fs/cgroup"}, false},
		{"v2 escaped", escaped, ModeV2, map[string]string{"unified": "/mnt/my cgroups"}, false},
		{"none", "1 0 0:1 / / rw - ext4 /dev/vda rw\n", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseMountinfo(strings.NewReader(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got mode %s, want an error", h.Mode())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Mode() != tt.mode {
				t.Errorf("got mode %s, want %s", h.Mode(), tt.mode)
			}
			got := h.Mounts()
			if len(got) != len(tt.mounts) {
				t.Errorf("got mounts %v, want %v", got, tt.mounts)
			}
			for k, v := range tt.mounts {
				if got[k] != v {
					t.Errorf("mount %s: got %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// fakeFile creates a control file with content.
func fakeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// fakeV1 lays out a v1 tree whose group vgrid/ws1 already has its control
// files (the kernel creates them on mkdir; a plain directory does not).
func fakeV1(t *testing.T, memsw bool) (*Hierarchy, string) {
	root := t.TempDir()
	m := map[string]string{}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		m[c] = filepath.Join(root, c)
	}
	g := func(c, f string) string { return filepath.Join(m[c], "vgrid", "ws1", f) }
	for _, f := range []string{"cpu.cfs_period_us", "cpu.cfs_quota_us", "cgroup.procs"} {
		fakeFile(t, g("cpu", f), "")
	}
	fakeFile(t, g("cpu", "cpu.stat"), "nr_periods 180\nnr_throttled 179\nthrottled_time 16800000000\n")
	fakeFile(t, g("cpuacct", "cpuacct.usage"), "2499000000\n")
	fakeFile(t, g("cpuacct", "cgroup.procs"), "")
	fakeFile(t, g("memory", "memory.limit_in_bytes"), "9223372036854771712\n")
	fakeFile(t, g("memory", "memory.usage_in_bytes"), "1048576\n")
	fakeFile(t, g("memory", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
	fakeFile(t, g("memory", "cgroup.procs"), "")
	if memsw {
		fakeFile(t, g("memory", "memory.memsw.limit_in_bytes"), "")
	}
	fakeFile(t, g("pids", "pids.max"), "")
	fakeFile(t, g("pids", "cgroup.procs"), "")
	return V1(m), root
}

// fakeV2 lays out a unified tree with the group vgrid/ws1.
func fakeV2(t *testing.T, swap bool) (*Hierarchy, string) {
	root := t.TempDir()
	fakeFile(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n")
	fakeFile(t, filepath.Join(root, "cgroup.subtree_control"), "")
	fakeFile(t, filepath.Join(root, "vgrid", "cgroup.subtree_control"), "")
	g := filepath.Join(root, "vgrid", "ws1")
	for _, f := range []string{"cpu.max", "memory.max", "pids.max", "cgroup.procs"} {
		fakeFile(t, filepath.Join(g, f), "")
	}
	if swap {
		fakeFile(t, filepath.Join(g, "memory.swap.max"), "")
	}
	fakeFile(t, filepath.Join(g, "cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 50\nnr_throttled 49\nthrottled_usec 10\n")
	fakeFile(t, filepath.Join(g, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
	return V2(root), root
}

func TestNewV1(t *testing.T) {
	tests := []struct {
		name      string
		memsw     bool
		l         Limits
		quota     string
		mem       string
		wantMemsw string
		pids      string
	}{
		{"half core", true, Limits{CPUCores: 0.5, MemoryBytes: 448 << 20}, "50000", "469762048", "469762048", "max"},
		{"no caps", true, Limits{}, "-1", "-1", "-1", "max"},
		{"tiny cpu clamps", false, Limits{CPUCores: 0.001, Pids: 64}, "1000", "-1", "", "64"},
		{"two cores", false, Limits{CPUCores: 2, MemoryBytes: 1 << 30}, "200000", "1073741824", "", "max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, root := fakeV1(t, tt.memsw)
			g, err := h.New("vgrid", "ws1", tt.l)
			if err != nil {
				t.Fatal(err)
			}
			p := func(c, f string) string { return filepath.Join(root, c, "vgrid", "ws1", f) }
			checks := map[string]string{
				p("cpu", "cpu.cfs_period_us"):        "100000",
				p("cpu", "cpu.cfs_quota_us"):         tt.quota,
				p("memory", "memory.limit_in_bytes"): tt.mem,
				p("pids", "pids.max"):                tt.pids,
			}
			if tt.memsw {
				checks[p("memory", "memory.memsw.limit_in_bytes")] = tt.wantMemsw
			}
			for f, want := range checks {
				if got := readTrim(t, f); got != want {
					t.Errorf("%s: got %q, want %q", f, got, want)
				}
			}
			if got, want := len(g.ProcsFiles()), 4; got != want {
				t.Errorf("got %d procs files, want %d: %v", got, want, g.ProcsFiles())
			}
			if got := g.Paths()["cpuacct"]; got != filepath.Join(root, "cpuacct", "vgrid", "ws1") {
				t.Errorf("cpuacct path: got %q", got)
			}
		})
	}
}

func TestNewV2(t *testing.T) {
	tests := []struct {
		name  string
		swap  bool
		l     Limits
		cpu   string
		mem   string
		swapV string
	}{
		{"half core", true, Limits{CPUCores: 0.5, MemoryBytes: 448 << 20}, "50000 100000", "469762048", "0"},
		{"no caps", true, Limits{}, "max 100000", "max", "max"},
		{"no swap file", false, Limits{CPUCores: 1.25, MemoryBytes: 1 << 30}, "125000 100000", "1073741824", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, root := fakeV2(t, tt.swap)
			g, err := h.New("vgrid", "ws1", tt.l)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(root, "vgrid", "ws1")
			if got := readTrim(t, filepath.Join(dir, "cpu.max")); got != tt.cpu {
				t.Errorf("cpu.max: got %q, want %q", got, tt.cpu)
			}
			if got := readTrim(t, filepath.Join(dir, "memory.max")); got != tt.mem {
				t.Errorf("memory.max: got %q, want %q", got, tt.mem)
			}
			if tt.swap {
				if got := readTrim(t, filepath.Join(dir, "memory.swap.max")); got != tt.swapV {
					t.Errorf("memory.swap.max: got %q, want %q", got, tt.swapV)
				}
			}
			for _, d := range []string{root, filepath.Join(root, "vgrid")} {
				if got, want := readTrim(t, filepath.Join(d, "cgroup.subtree_control")), "+cpu +memory +pids"; got != want {
					t.Errorf("%s subtree_control: got %q, want %q", d, got, want)
				}
			}
			if got := g.ProcsFiles(); len(got) != 1 || got[0] != filepath.Join(dir, "cgroup.procs") {
				t.Errorf("procs files: got %v", got)
			}
			for _, c := range []string{"cpu", "memory", "pids"} {
				if g.Paths()[c] != dir {
					t.Errorf("path of %s: got %q, want %q", c, g.Paths()[c], dir)
				}
			}
		})
	}
}

func TestReadersV1V2(t *testing.T) {
	hv1, _ := fakeV1(t, true)
	hv2, _ := fakeV2(t, true)
	tests := []struct {
		name                string
		h                   *Hierarchy
		usage               time.Duration
		periods, throttled  int64
		oom                 int64
		quota, period, mlim int64
	}{
		{"v1", hv1, 2499 * time.Millisecond, 180, 179, 1, 50000, 100000, 256 << 20},
		{"v2", hv2, 2500 * time.Millisecond, 50, 49, 2, 50000, 100000, 256 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := tt.h.New("vgrid", "ws1", Limits{CPUCores: 0.5, MemoryBytes: 256 << 20})
			if err != nil {
				t.Fatal(err)
			}
			if u, err := g.CPUUsage(); err != nil || u != tt.usage {
				t.Errorf("CPUUsage: got %v, %v, want %v", u, err, tt.usage)
			}
			if p, th, err := g.Throttled(); err != nil || p != tt.periods || th != tt.throttled {
				t.Errorf("Throttled: got %d/%d, %v, want %d/%d", p, th, err, tt.periods, tt.throttled)
			}
			if n, err := g.OOMKills(); err != nil || n != tt.oom {
				t.Errorf("OOMKills: got %d, %v, want %d", n, err, tt.oom)
			}
			if q, p, err := g.CPUMax(); err != nil || q != tt.quota || p != tt.period {
				t.Errorf("CPUMax: got %d/%d, %v, want %d/%d", q, p, err, tt.quota, tt.period)
			}
			if m, err := g.MemoryLimit(); err != nil || m != tt.mlim {
				t.Errorf("MemoryLimit: got %d, %v, want %d", m, err, tt.mlim)
			}
			if err := g.Update(Limits{}); err != nil {
				t.Fatal(err)
			}
			if q, _, err := g.CPUMax(); err != nil || q != -1 {
				t.Errorf("CPUMax after uncap: got %d, %v, want -1", q, err)
			}
		})
	}
}

func TestMemoryLimitUnlimitedV1(t *testing.T) {
	h, _ := fakeV1(t, false)
	g, err := h.Load("vgrid", "ws1")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := g.MemoryLimit(); err != nil || m != 0 {
		t.Errorf("got %d, %v, want 0 (unlimited)", m, err)
	}
}

func TestLoadMissing(t *testing.T) {
	h, _ := fakeV1(t, false)
	if _, err := h.Load("vgrid", "nope"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want os.ErrNotExist", err)
	}
}

func TestBadNames(t *testing.T) {
	h, _ := fakeV1(t, false)
	for _, tt := range []struct{ parent, name string }{
		{"vgrid", ""}, {"vgrid", ".."}, {"vgrid", "a/b"}, {"../etc", "x"}, {"a//b", "x"},
	} {
		if _, err := h.New(tt.parent, tt.name, Limits{}); err == nil {
			t.Errorf("New(%q, %q): got no error", tt.parent, tt.name)
		}
	}
	if _, err := h.New("vgrid", "ws1", Limits{CPUCores: -1}); err == nil {
		t.Error("negative cpu: got no error")
	}
}

func TestDeleteFake(t *testing.T) {
	// A plain directory stands in for a kernel one: empty it, then Delete
	// must remove each directory once and tolerate ones already gone.
	root := t.TempDir()
	m := map[string]string{"cpu": filepath.Join(root, "cpu,cpuacct"), "cpuacct": filepath.Join(root, "cpu,cpuacct"), "memory": filepath.Join(root, "memory")}
	for _, d := range []string{"cpu,cpuacct", "memory"} {
		if err := os.MkdirAll(filepath.Join(root, d, "vgrid", "g"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	g, err := V1(m).Load("vgrid", "g")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(g.ProcsFiles()); got != 2 {
		t.Errorf("co-mounted cpu,cpuacct: got %d procs files, want 2", got)
	}
	if err := os.Remove(filepath.Join(root, "memory", "vgrid", "g")); err != nil {
		t.Fatal(err)
	}
	if err := g.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cpu,cpuacct", "vgrid", "g")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("group dir still there: %v", err)
	}
}

func TestCPUSeconds(t *testing.T) {
	v1 := func(t *testing.T) (*Hierarchy, string) { return fakeV1(t, false) }
	v2 := func(t *testing.T) (*Hierarchy, string) { return fakeV2(t, false) }
	const v1File, v2File = "cpuacct/vgrid/ws1/cpuacct.usage", "vgrid/ws1/cpu.stat"
	tests := []struct {
		name    string
		tree    func(*testing.T) (*Hierarchy, string)
		file    string // relative to the tree's root; "" keeps fakeV1/fakeV2's
		content string
		remove  bool // remove file instead
		want    float64
		wantErr bool
	}{
		{"v1 as laid out", v1, "", "", false, 2.499, false},
		{"v1 zero", v1, v1File, "0\n", false, 0, false},
		{"v1 nanoseconds", v1, v1File, "123456789012\n", false, 123.456789012, false},
		{"v1 no newline", v1, v1File, "1500000000", false, 1.5, false},
		{"v1 garbage", v1, v1File, "lots\n", false, 0, true},
		{"v1 missing", v1, v1File, "", true, 0, true},
		{"v2 as laid out", v2, "", "", false, 2.5, false},
		{"v2 usage not first", v2, v2File, "nr_periods 3\nusage_usec 7250001\nuser_usec 7000000\n", false, 7.250001, false},
		{"v2 zero", v2, v2File, "usage_usec 0\nuser_usec 0\nsystem_usec 0\n", false, 0, false},
		{"v2 no usage_usec", v2, v2File, "user_usec 1\nsystem_usec 2\n", false, 0, true},
		{"v2 garbage", v2, v2File, "usage_usec many\n", false, 0, true},
		{"v2 missing", v2, v2File, "", true, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, root := tt.tree(t)
			g, err := h.Load("vgrid", "ws1")
			if err != nil {
				t.Fatal(err)
			}
			if tt.file != "" {
				f := filepath.Join(root, filepath.FromSlash(tt.file))
				if tt.remove {
					if err := os.Remove(f); err != nil {
						t.Fatal(err)
					}
				} else {
					fakeFile(t, f, tt.content)
				}
			}
			got, err := g.CPUSeconds()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := got - tt.want; d > 1e-9 || d < -1e-9 {
				t.Errorf("got %v s, want %v s", got, tt.want)
			}
		})
	}
}
