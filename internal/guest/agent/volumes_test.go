package agent

import (
	"bytes"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"vgrid/internal/guest/proto"
)

func TestParseVolumes(t *testing.T) {
	good := `[{"name":"data","serial":"vgv-0a1b","mount":"/data"},
	          {"serial":"vgv-2","mount":"/data/sub","read_only":true,"future":1},
	          {"serial":"raw.disk_1"}]`
	vols, err := ParseVolumes([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []proto.SeedVolume{
		{Name: "data", Serial: "vgv-0a1b", Mount: "/data"},
		{Serial: "vgv-2", Mount: "/data/sub", ReadOnly: true},
		{Serial: "raw.disk_1"},
	}
	if !reflect.DeepEqual(vols, want) {
		t.Errorf("got %+v, want %+v", vols, want)
	}
	if vols, err := ParseVolumes([]byte(`[]`)); err != nil || len(vols) != 0 {
		t.Errorf("empty list: %v %v", vols, err)
	}
	tests := []struct {
		name, in, msg string
	}{
		{"not json", `{`, "vgrid-volumes.json"},
		{"object", `{"serial":"a"}`, "cannot unmarshal"},
		{"no serial", `[{"mount":"/d"}]`, `volume 0: serial ""`},
		{"long serial", `[{"serial":"abcdefghijklmnopqrstu"}]`, "serial"},
		{"serial with comma", `[{"serial":"a,b"}]`, "serial"},
		{"same serial", `[{"serial":"a"},{"serial":"a"}]`, "volume 1: serial \"a\": volume 0 has it too"},
		{"relative mount", `[{"serial":"a","mount":"data"}]`, "absolute"},
		{"unclean mount", `[{"serial":"a","mount":"/data/../etc"}]`, "clean"},
		{"trailing slash", `[{"serial":"a","mount":"/data/"}]`, "clean"},
		{"root mount", `[{"serial":"a","mount":"/"}]`, "not the root"},
		{"proc", `[{"serial":"a","mount":"/proc/x"}]`, "/proc"},
		{"dev", `[{"serial":"a","mount":"/dev"}]`, "/dev"},
		{"newline", `[{"serial":"a","mount":"/a\nb"}]`, "control"},
		{"same mount", `[{"serial":"a","mount":"/d"},{"serial":"b","mount":"/d"}]`, "volume 0 is mounted there too"},
		{"bad name", `[{"serial":"a","name":"x\u0000"}]`, "name"},
	}
	for _, tt := range tests {
		_, err := ParseVolumes([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: got %v, want an error saying %q", tt.name, err, tt.msg)
		}
	}
	many := "[" + strings.Repeat(`{"serial":"x"},`, maxSeedVolumes) + `{"serial":"y"}]`
	if _, err := ParseVolumes([]byte(many)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("%d volumes: got %v", maxSeedVolumes+1, err)
	}
}

func FuzzParseVolumes(f *testing.F) {
	f.Add([]byte(`[{"name":"data","serial":"vgv-1","mount":"/data","read_only":true}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		vols, err := ParseVolumes(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, v := range vols {
			if !validSerial(v.Serial) || seen[v.Serial] || checkMount(v.Mount) != nil {
				t.Fatalf("accepted %+v", v)
			}
			seen[v.Serial] = true
		}
	})
}

func TestParseMountInfo(t *testing.T) {
	in := "22 1 254:0 / / rw,relatime - ext4 /dev/root rw\n" +
		"30 22 254:32 / /data rw,nosuid,nodev shared:5 master:1 - ext4 /dev/vdc rw\n" +
		"31 22 254:48 / /my\\040data rw - ext2 /dev/vdd ro\n" +
		"garbage\n" +
		"32 22 0:5 / /x rw -\n"
	got := parseMountInfo([]byte(in))
	want := []mountEntry{
		{Point: "/", FSType: "ext4", Source: "/dev/root"},
		{Point: "/data", FSType: "ext4", Source: "/dev/vdc"},
		{Point: "/my data", FSType: "ext2", Source: "/dev/vdd"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for in, want := range map[string]string{`a\040b`: "a b", `a\`: `a\`, `\04`: `\04`, `\134x`: `\x`, `\999`: `\999`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescape %q: got %q, want %q", in, got, want)
		}
	}
}

// fakeDisk adds /sys/block/<name>/serial and /dev/<name> (a file of size
// bytes, starting with data) under root.
func fakeDisk(t *testing.T, root, name, serial string, size int64, data []byte) string {
	t.Helper()
	sys := filepath.Join(root, "sys/block", name)
	if err := os.MkdirAll(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sys, "serial"), []byte(serial+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(root, "dev", name)
	if err := os.MkdirAll(filepath.Dir(dev), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dev, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dev, size); err != nil {
		t.Fatal(err)
	}
	return dev
}

func requireMke2fs(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Skip("mke2fs is not installed (e2fsprogs)")
	}
}

func TestFindVolumeDeviceAndProbe(t *testing.T) {
	requireMke2fs(t)
	root := t.TempDir()
	empty := fakeDisk(t, root, "vdc", "vgv-empty", 4<<20, nil)
	ext := fakeDisk(t, root, "vdd", "vgv-ext", 4<<20, nil)
	other := fakeDisk(t, root, "vde", "vgv-other", 4<<20, append(make([]byte, 70<<10), 'x'))
	zero := fakeDisk(t, root, "vdf", "vgv-zero", 0, nil)
	// A serial file without its device node does not count.
	if err := os.MkdirAll(filepath.Join(root, "sys/block/vdg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sys/block/vdg/serial"), []byte("vgv-nodev\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := formatVolume(ext); err != nil {
		t.Fatal(err)
	}
	for serial, want := range map[string]string{"vgv-empty": "/dev/vdc", "vgv-ext": "/dev/vdd", "vgv-nodev": "", "vgv": "", "vgv-ext2": ""} {
		if got := findVolumeDevice(root, serial); got != want {
			t.Errorf("serial %s: got %q, want %q", serial, got, want)
		}
	}
	for dev, want := range map[string]diskContent{empty: diskEmpty, ext: diskExt, other: diskOther} {
		if got, err := probeDisk(dev); err != nil || got != want {
			t.Errorf("%s: got %v, %v; want %v", dev, got, err, want)
		}
	}
	for _, dev := range []string{zero, filepath.Join(root, "dev/vdz")} {
		if _, err := probeDisk(dev); err == nil {
			t.Errorf("%s: no error", dev)
		}
	}
}

// mountCall is one call of the fake mount.
type mountCall struct {
	dev, dir string
	ro       bool
}

func TestApplyVolumes(t *testing.T) {
	requireMke2fs(t)
	root := t.TempDir()
	fresh := fakeDisk(t, root, "vdc", "vgv-fresh", 8<<20, nil)
	fakeDisk(t, root, "vdd", "vgv-ro-empty", 4<<20, nil)
	otherData := append(make([]byte, 4096), []byte("precious")...)
	other := fakeDisk(t, root, "vde", "vgv-other", 4<<20, otherData)
	fakeDisk(t, root, "vdf", "vgv-raw", 4<<20, nil)
	roExt := fakeDisk(t, root, "vdg", "vgv-ro-ext", 4<<20, nil)
	if err := formatVolume(roExt); err != nil {
		t.Fatal(err)
	}
	seed := []byte(`[
	  {"name":"sub","serial":"vgv-fresh","mount":"/data/sub"},
	  {"name":"data","serial":"vgv-ro-ext","mount":"/data","read_only":true},
	  {"name":"roe","serial":"vgv-ro-empty","mount":"/roe","read_only":true},
	  {"name":"other","serial":"vgv-other","mount":"/other"},
	  {"name":"raw","serial":"vgv-raw"},
	  {"name":"gone","serial":"vgv-missing","mount":"/gone"}
	]`)
	var mounts []mountCall
	formats := 0
	a := New(Config{Root: root, Log: log.New(io.Discard, "", 0), VolumeWait: 300 * time.Millisecond,
		FormatVolume: func(dev string) error { formats++; return formatVolume(dev) },
		MountVolume: func(dev, dir string, ro bool) error {
			mounts = append(mounts, mountCall{dev, dir, ro})
			return nil
		},
	})
	start := time.Now()
	err := a.applyVolumes(seed)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s: the wait for missing disks is bounded by VolumeWait", took)
	}
	for _, want := range []string{"volume roe (serial vgv-ro-empty)", "volume other", "volume gone"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
	got := a.volumeStatus()
	want := []proto.VolumeStatus{
		{Name: "sub", Serial: "vgv-fresh", Mount: "/data/sub", Device: "/dev/vdc", State: proto.VolumeMounted, Formatted: true},
		{Name: "data", Serial: "vgv-ro-ext", Mount: "/data", Device: "/dev/vdg", State: proto.VolumeMounted, ReadOnly: true},
		{Name: "roe", Serial: "vgv-ro-empty", Mount: "/roe", Device: "/dev/vdd", State: proto.VolumeError, ReadOnly: true,
			Error: "no ext2/3/4 filesystem on /dev/vdd, and the volume is read-only: not formatted"},
		{Name: "other", Serial: "vgv-other", Mount: "/other", Device: "/dev/vde", State: proto.VolumeError,
			Error: "/dev/vde holds data that is not an ext2/3/4 filesystem: not formatted, so as not to lose it"},
		{Name: "raw", Serial: "vgv-raw", Device: "/dev/vdf", State: proto.VolumeAttached},
		{Name: "gone", Serial: "vgv-missing", Mount: "/gone", State: proto.VolumeError, Error: `no disk with serial "vgv-missing" after 300ms`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("status:\n got %+v\nwant %+v", got, want)
	}
	// The parent first, read-only; then the fresh volume, formatted.
	wantMounts := []mountCall{
		{roExt, filepath.Join(root, "data"), true},
		{fresh, filepath.Join(root, "data/sub"), false},
	}
	if !reflect.DeepEqual(mounts, wantMounts) || formats != 1 {
		t.Errorf("mounts %+v (want %+v), %d formats (want 1)", mounts, wantMounts, formats)
	}
	if c, err := probeDisk(fresh); err != nil || c != diskExt {
		t.Errorf("fresh volume after apply: %v %v, want an ext filesystem", c, err)
	}
	if b, _ := os.ReadFile(other); !bytes.HasPrefix(b, otherData) {
		t.Error("a volume holding data was written")
	}
	if st, err := os.Stat(filepath.Join(root, "data/sub")); err != nil || !st.IsDir() {
		t.Errorf("mount point /data/sub: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "roe")); err == nil {
		t.Error("mount point /roe made for a volume that is not mounted")
	}
	// The facts carry the volumes.
	reply, _ := a.Handle(proto.Message{Type: proto.TypeFacts, ID: "1"})
	if !reflect.DeepEqual(reply.Volumes, want) {
		t.Errorf("facts volumes: %+v", reply.Volumes)
	}

	// An agent restart: what is mounted stays, nothing is formatted again;
	// a mount point taken by another device is an error.
	info := "22 1 254:0 / / rw - ext4 /dev/root rw\n" +
		"30 22 254:96 / /data ro - ext4 /dev/vdg ro\n" +
		"31 30 254:32 / /data/sub rw - ext4 /dev/vdc rw\n" +
		"32 22 254:80 / /other rw - ext4 /dev/vdf rw\n"
	if err := os.MkdirAll(filepath.Join(root, "proc/self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/self/mountinfo"), []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts, formats = nil, 0
	_ = a.applyVolumes(seed)
	got = a.volumeStatus()
	if len(mounts) != 0 || formats != 0 {
		t.Errorf("after a restart: mounts %+v, %d formats", mounts, formats)
	}
	if got[0].State != proto.VolumeMounted || got[0].Formatted || got[1].State != proto.VolumeMounted {
		t.Errorf("after a restart: %+v", got[:2])
	}
	if got[3].Error != "/dev/vdf is mounted at /other already" {
		t.Errorf("taken mount point: %+v", got[3])
	}

	// Without a mount hook outside the guest, nothing is mounted.
	b := New(Config{Root: t.TempDir(), Log: log.New(io.Discard, "", 0)})
	fakeDisk(t, b.root, "vdc", "s", 4<<20, nil)
	if err := b.applyVolumes([]byte(`[{"serial":"s","mount":"/m"}]`)); err == nil || !strings.Contains(err.Error(), "only in the guest") {
		t.Errorf("no mount hook: %v", err)
	}
}

// A bad vgrid-volumes.json is an error of the seed; the rest of it is
// still applied.
func TestApplySeedVolumes(t *testing.T) {
	root := t.TempDir()
	fakeDisk(t, root, "vdc", "vgv-1", 1<<20, nil)
	var mounted []string
	a := New(Config{Root: root, Log: log.New(io.Discard, "", 0), SetHostname: func(string) error { return nil },
		FormatVolume: func(string) error { t.Error("formatted"); return nil },
		MountVolume:  func(dev, dir string, ro bool) error { mounted = append(mounted, dir); return nil },
	})
	err := a.applySeed(&Seed{Hostname: "h", Volumes: []byte(`[{"serial":"vgv-1"}]`)})
	if err != nil || len(mounted) != 0 {
		t.Errorf("attach only: %v, mounted %q", err, mounted)
	}
	if st := a.volumeStatus(); len(st) != 1 || st[0].State != proto.VolumeAttached {
		t.Errorf("status %+v", st)
	}
	err = a.applySeed(&Seed{Hostname: "h", Volumes: []byte(`[{"serial":"vgv-1","mount":"rel"}]`)})
	if err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("bad file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "h\n" {
		t.Errorf("hostname not written: %q", b)
	}
}

func TestLoadSeedVolumes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, proto.SeedMetaData), []byte("instance-id: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSeed(dir)
	if err != nil || s.Volumes != nil {
		t.Fatalf("no volumes file: %v %q", err, s.Volumes)
	}
	if err := os.WriteFile(filepath.Join(dir, proto.SeedVolumes), []byte(`[]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err = LoadSeed(dir); err != nil || string(s.Volumes) != "[]" {
		t.Fatalf("volumes file: %v %q", err, s.Volumes)
	}
}
