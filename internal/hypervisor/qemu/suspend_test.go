package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/cgroup"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// tickScript counts on the serial console, once a second, and writes the
// count to the disk (a resumed guest must still be able to write it).
const tickScript = "#!/bin/sh\ni=0; while :; do i=$((i+1)); echo tick $i > /dev/ttyS0; echo $i > /root/ticks; sync; sleep 1; done\n"

var tickRE = regexp.MustCompile(`(?m)^tick (\d+)\r?\n`) // whole lines: the console may end mid-line

// ticks returns the counter values on the console, in order.
func ticks(t *testing.T, d *Driver, id string) []int {
	t.Helper()
	log, err := d.ConsoleLog(context.Background(), id, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, m := range tickRE.FindAllStringSubmatch(string(log), -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

// waitTicks polls the console until it shows at least n ticks.
func waitTicks(t *testing.T, d *Driver, id string, n int, timeout time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := ticks(t, d, id); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			log, _ := d.ConsoleLog(context.Background(), id, 2048)
			t.Fatalf("fewer than %d ticks on the console after %s:\n%s", n, timeout, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSuspendResume suspends a guest that counts on its console and
// resumes it: no process and a state file in between, the count goes on
// where it was (not from 1), and the guest's uptime goes on.
func TestSuspendResume(t *testing.T) {
	dir, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("susp-tick", img)
	spec.Context = &model.Context{UserData: tickScript}
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	g0 := hypervisortest.WaitGuest(t, d, spec.ID)
	reported := time.Now()
	waitTicks(t, d, spec.ID, 3, hypervisortest.GuestTimeout)

	p := d.paths(spec.ID)
	t0 := time.Now()
	res, err := d.Suspend(ctx, spec.ID)
	wall := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	// The guest ran this long after its report (more or less the time
	// Suspend took to stop it).
	ranFor := t0.Sub(reported).Seconds()
	t.Logf("suspend: %d bytes (%.1f MiB) in %s (call took %s): %.0f MB/s",
		res.Bytes, float64(res.Bytes)/(1<<20), res.Duration.Round(time.Millisecond), wall.Round(time.Millisecond),
		float64(res.Bytes)/res.Duration.Seconds()/1e6)
	before := ticks(t, d, spec.ID)
	last := before[len(before)-1]
	t.Logf("last tick before the suspension: %d", last)
	if alive(in.PID, marker(p)) {
		t.Errorf("qemu %d still runs after Suspend", in.PID)
	}
	fi, err := os.Stat(filepath.Join(dir, spec.ID, memStateFile))
	if err != nil || fi.Size() != res.Bytes {
		t.Fatalf("state file: got %v, %v; want %d bytes", fi, err, res.Bytes)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, spec.ID, memStateFile+".tmp*")); len(matches) > 0 {
		t.Errorf("temporary state files left: %v", matches)
	}
	if _, err := d.cg.Load(d.opts.CgroupParent, spec.ID); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup of the suspended instance: got %v, want it removed", err)
	}
	if got, err := d.Get(ctx, spec.ID); err != nil || got.State != hypervisor.InstanceSuspended || got.ExitReason != "suspended" {
		t.Errorf("Get: got %+v, %v, want suspended", got, err)
	}
	time.Sleep(2 * time.Second) // suspended time the guest must not count

	t1 := time.Now()
	in2, err := d.Start(ctx, spec)
	wall = time.Since(t1)
	if err != nil {
		t.Fatal(err)
	}
	if in2.LastResume == nil {
		t.Fatalf("Start: got %+v, want LastResume", in2)
	}
	t.Logf("resume: %d bytes in %s (call took %s): %.0f MB/s", in2.LastResume.Bytes,
		in2.LastResume.Duration.Round(time.Millisecond), wall.Round(time.Millisecond),
		float64(in2.LastResume.Bytes)/in2.LastResume.Duration.Seconds()/1e6)
	if in2.State != hypervisor.InstanceRunning || in2.PID == in.PID || len(in2.Cgroup) == 0 {
		t.Errorf("after resume: got %+v, want running in a new process and cgroup", in2)
	}
	if _, err := os.Stat(filepath.Join(dir, spec.ID, memStateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after resume: got %v, want it deleted", err)
	}
	// The resumed QEMU (which joins its group while it loads) runs in its
	// group under the quantum's cap, not the restore's.
	if g, err := d.cg.Load(d.opts.CgroupParent, spec.ID); err != nil {
		t.Errorf("cgroup after resume: %v", err)
	} else {
		procs, _ := g.Procs()
		want := d.limits(in2.Accel, spec.Quantum).Quota()
		if q, _, err := g.CPUMax(); err != nil || q != want || len(procs) != 1 || procs[0] != in2.PID {
			t.Errorf("cgroup after resume: quota %d (%v), procs %v; want quota %d and [%d]", q, err, procs, want, in2.PID)
		}
	}
	// QEMU truncates the console file when it starts: only ticks after
	// the resume are there.
	after := waitTicks(t, d, spec.ID, 2, 30*time.Second)
	t.Logf("ticks after the resume: %v", after)
	if after[0] <= last || after[0] > last+3 {
		t.Errorf("first tick after the resume: got %d, want just after %d (the guest rebooted or lost time?)", after[0], last)
	}
	for i := 1; i < len(after); i++ {
		if after[i] != after[i-1]+1 {
			t.Errorf("ticks after the resume are not consecutive: %v", after)
			break
		}
	}
	if log, _ := d.ConsoleLog(ctx, spec.ID, 1<<20); strings.Contains(string(log), "I/O error") || strings.Contains(string(log), "EXT4-fs error") {
		t.Errorf("the resumed guest cannot write its disk:\n%s", log)
	}
	g1 := hypervisortest.WaitGuest(t, d, spec.ID)
	t.Logf("guest uptime: %.2fs at its first report, %.2fs after it ran %.2fs more and was resumed", g0.Guest.UptimeS, g1.Guest.UptimeS, ranFor)
	if g1.Guest.UptimeS < g0.Guest.UptimeS+ranFor-0.5 {
		t.Errorf("uptime after the resume: got %.2fs, want at least %.2fs", g1.Guest.UptimeS, g0.Guest.UptimeS+ranFor-0.5)
	}
	if g1.Guest.Hostname != g0.Guest.Hostname || g1.Guest.VCPUs != g0.Guest.VCPUs {
		t.Errorf("guest after resume: got %+v, want as before %+v", g1.Guest, g0.Guest)
	}
	if err := d.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, spec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance directory after Delete: %v", err)
	}
}

// sumScript fills 100 MB of a tmpfs with random data and prints its
// checksum every few seconds, so that a resumed guest can be seen to have
// kept its memory.
const sumScript = "#!/bin/sh\nmkdir -p /mnt/d\nmount -t tmpfs -o size=150m tmpfs /mnt/d\n" +
	"head -c 100000000 /dev/urandom > /mnt/d/f\n" +
	"while :; do echo SUM $(md5sum < /mnt/d/f) > /dev/ttyS0; sleep 2; done\n"

var sumRE = regexp.MustCompile(`(?m)^SUM ([0-9a-f]{32})`)

// TestSuspendFullGuest saves and restores a guest with 100 MB of random
// data in RAM: how long that takes, how big the state is, and that the
// data is the same after.
func TestSuspendFullGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100 MB of guest RAM under TCG (-short)")
	}
	_, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("susp-full", img)
	spec.Quantum.Memory = 384 * model.MiB
	spec.Context = &model.Context{UserData: sumScript}
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, d, spec.ID, "SUM ", 3*hypervisortest.GuestTimeout)
	log, _ := d.ConsoleLog(ctx, spec.ID, 1<<20)
	sum := sumRE.FindStringSubmatch(string(log))
	if sum == nil {
		t.Fatalf("no checksum on the console:\n%s", log)
	}
	res, err := d.Suspend(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("suspend of a guest with 100 MB of data in RAM: %d bytes (%.1f MiB) in %s: %.0f MB/s",
		res.Bytes, float64(res.Bytes)/(1<<20), res.Duration.Round(time.Millisecond), float64(res.Bytes)/res.Duration.Seconds()/1e6)
	if res.Bytes < 100_000_000 {
		t.Errorf("state of %d bytes cannot hold the guest's 100 MB", res.Bytes)
	}
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resume: %d bytes in %s: %.0f MB/s", in.LastResume.Bytes, in.LastResume.Duration.Round(time.Millisecond),
		float64(in.LastResume.Bytes)/in.LastResume.Duration.Seconds()/1e6)
	waitConsole(t, d, spec.ID, "SUM ", 30*time.Second)
	log, _ = d.ConsoleLog(ctx, spec.ID, 1<<20)
	for _, m := range sumRE.FindAllStringSubmatch(string(log), -1) {
		if m[1] != sum[1] {
			t.Errorf("checksum after the resume: got %s, want %s", m[1], sum[1])
		}
	}
	if strings.Contains(string(log), "Linux version") {
		t.Errorf("the guest booted again:\n%s", log)
	}
}

// TestQMPPassFD checks that ExecuteFD hands a file descriptor to the
// server with the command, as QEMU's getfd needs.
func TestQMPPassFD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		buf, oob := make([]byte, 4096), make([]byte, 256)
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				got <- err.Error()
				return
			}
			var req struct {
				Execute string `json:"execute"`
				ID      string `json:"id"`
			}
			_ = json.Unmarshal(buf[:n], &req)
			if req.Execute == "getfd" {
				msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
				var fds []int
				for _, m := range msgs {
					if r, err := syscall.ParseUnixRights(&m); err == nil {
						fds = append(fds, r...)
					}
				}
				if len(fds) != 1 {
					got <- fmt.Sprintf("getfd came with %d fds", len(fds))
					return
				}
				f := os.NewFile(uintptr(fds[0]), "passed")
				b, _ := io.ReadAll(f)
				f.Close()
				got <- string(b)
			}
			c.Write([]byte(`{"return": {}, "id": "` + req.ID + `"}` + "\n"))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialQMP(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	file := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(file, []byte("saved state"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.ExecuteFD(ctx, "getfd", map[string]any{"fdname": stateFDName}, nil, int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "saved state" {
		t.Errorf("the server read %q through the passed fd, want %q", s, "saved state")
	}
}

func TestResumable(t *testing.T) {
	img := hypervisor.LocalImage{Name: "i", Boot: "direct", Disk: "/d", DiskFormat: "raw", Kernel: "/k"}
	old := hypervisortest.Spec("r", img)
	ok := old
	ok.Quantum.CPU = 0.25
	ok.Quantum.DiskIOPS = 100
	ok.Hostname = "other"
	if err := resumable(old, ok, AccelTCG); err != nil {
		t.Errorf("a new CPU cap, I/O limit and hostname: %v", err)
	}
	for name, mutate := range map[string]func(*hypervisor.InstanceSpec){
		"vcpus":  func(s *hypervisor.InstanceSpec) { s.Quantum.VCPUs = 2 },
		"memory": func(s *hypervisor.InstanceSpec) { s.Quantum.Memory = 512 * model.MiB },
		"image":  func(s *hypervisor.InstanceSpec) { s.Image.Kernel = "/k2" },
		"accel":  func(s *hypervisor.InstanceSpec) { s.Accel = AccelKVM },
		"nics":   func(s *hypervisor.InstanceSpec) { s.NICs = testNICs() },
	} {
		s := old
		mutate(&s)
		if err := resumable(old, s, AccelTCG); !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("%s changed: got %v, want ErrInvalid", name, err)
		}
	}
}

// A guest saved with NICs resumes with the same MACs, addresses and
// gateways, on any taps.
func TestResumableNICs(t *testing.T) {
	img := hypervisor.LocalImage{Name: "i", Boot: "direct", Disk: "/d", DiskFormat: "raw", Kernel: "/k"}
	old := hypervisortest.Spec("r", img)
	old.NICs = testNICs()
	ok := old
	ok.NICs = testNICs()
	ok.NICs[0].Tap, ok.NICs[1].Tap = "other-0", "other-1"
	ok.NICs[0].MAC = strings.ToLower(ok.NICs[0].MAC)
	if err := resumable(old, ok, AccelTCG); err != nil {
		t.Errorf("other taps: %v", err)
	}
	for name, mutate := range map[string]func(*hypervisor.InstanceSpec){
		"none":    func(s *hypervisor.InstanceSpec) { s.NICs = nil },
		"fewer":   func(s *hypervisor.InstanceSpec) { s.NICs = s.NICs[:1] },
		"swapped": func(s *hypervisor.InstanceSpec) { s.NICs[0], s.NICs[1] = s.NICs[1], s.NICs[0] },
		"mac":     func(s *hypervisor.InstanceSpec) { s.NICs[1].MAC = "02:aa:bb:cc:dd:03" },
		"address": func(s *hypervisor.InstanceSpec) { s.NICs[1].Address = netip.MustParsePrefix("10.78.0.3/16") },
		"gateway": func(s *hypervisor.InstanceSpec) { s.NICs[0].Gateway = netip.Addr{} },
	} {
		s := old
		s.NICs = testNICs()
		mutate(&s)
		if err := resumable(old, s, AccelTCG); !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

// A restoring QEMU gets a core per vCPU and one more until its guest runs.
func TestRestoreLimits(t *testing.T) {
	for _, c := range []struct {
		cap   float64
		vcpus int
		want  float64
	}{
		{0.25, 1, 2},
		{1, 1, 2},
		{2, 4, 5},
		{8, 4, 8}, // a cap above that stays
	} {
		got := restoreLimits(cgroup.Limits{CPUCores: c.cap, MemoryBytes: 1 << 30}, model.Quantum{VCPUs: c.vcpus})
		if got.CPUCores != c.want || got.MemoryBytes != 1<<30 {
			t.Errorf("cap %v, %d vCPUs: got %+v, want %v cores and the same memory", c.cap, c.vcpus, got, c.want)
		}
	}
}
