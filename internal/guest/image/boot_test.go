package image_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vgrid/internal/guest/guesttest"
	"vgrid/internal/guest/proto"
	"vgrid/internal/model"
)

const bootTimeout = 60 * time.Second

// hostTSCkHz reads the host's TSC frequency from the first "cpu MHz" line
// of /proc/cpuinfo (the guest needs it as tsc_early_khz under TCG).
func hostTSCkHz(t *testing.T) string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return strconv.FormatInt(int64(mhz*1000+0.5), 10)
		}
	}
	t.Fatal("no cpu MHz in /proc/cpuinfo")
	return ""
}

// guest is one booted VM.
type guest struct {
	t       *testing.T
	dir     string
	cmd     *exec.Cmd
	exited  chan error
	conn    net.Conn
	lines   *bufio.Reader
	started time.Time
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// boot starts QEMU on a 1 GiB overlay of img with a cidata seed.
func boot(t *testing.T, img model.Image) *guest {
	if _, err := exec.LookPath("genisoimage"); err != nil {
		guesttest.Skip(t, "genisoimage is not installed (needed for the cidata seed)")
	}
	dir, err := os.MkdirTemp("", "vgrid-boot-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	overlay := filepath.Join(dir, "ov.qcow2")
	run(t, dir, "qemu-img", "create", "-q", "-f", "qcow2", "-b", img.Disk.Path, "-F", "raw", overlay, "1G")

	seed := filepath.Join(dir, "seed")
	files := map[string]string{
		proto.SeedMetaData: "instance-id: boot-test\nlocal-hostname: vgrid-boot-test\n" +
			"public-keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest test@vgrid\n",
		proto.SeedUserData: "#!/bin/sh\necho \"VGRID-USER-DATA $GREETING\"\n",
		proto.SeedEnv:      "GREETING=hello-from-seed\n",
	}
	if err := os.MkdirAll(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(seed, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	iso := filepath.Join(dir, "seed.iso")
	run(t, dir, "genisoimage", "-quiet", "-o", iso, "-V", proto.SeedLabel, "-J", "-r", seed)

	agentSock := filepath.Join(dir, "agent.sock")
	args := []string{
		"-M", "microvm", "-accel", "tcg", "-m", "256", "-smp", "2",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "file:" + filepath.Join(dir, "console.log"),
		"-kernel", img.Kernel.Path, "-initrd", img.Initrd.Path,
		"-append", img.Cmdline + " tsc_early_khz=" + hostTSCkHz(t),
		"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,path=" + agentSock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + proto.PortName,
		"-drive", "file=" + overlay + ",format=qcow2,if=none,id=d0",
		"-device", "virtio-blk-device,drive=d0",
		"-drive", "file=" + iso + ",format=raw,if=none,id=d1,readonly=on",
		"-device", "virtio-blk-device,drive=d1",
		"-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
	}
	g := &guest{t: t, dir: dir, exited: make(chan error, 1)}
	g.cmd = exec.Command("qemu-system-x86_64", args...)
	g.cmd.Stderr = &prefixWriter{t: t, prefix: "qemu: "}
	g.started = time.Now()
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.exited <- g.cmd.Wait() }()
	t.Cleanup(func() {
		if g.conn != nil {
			g.conn.Close()
		}
		select {
		case <-g.exited:
		default:
			g.cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			console, _ := os.ReadFile(filepath.Join(dir, "console.log"))
			t.Logf("console:\n%s", console)
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		g.conn, err = net.Dial("unix", agentSock)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to the agent socket: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.lines = bufio.NewReader(g.conn)
	return g
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s%s", w.prefix, strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// recv reads the next message from the agent.
func (g *guest) recv(timeout time.Duration) proto.Message {
	g.t.Helper()
	g.conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := g.lines.ReadBytes('\n')
	if err != nil {
		g.t.Fatalf("read from agent: %v", err)
	}
	var m proto.Message
	if err := json.Unmarshal(line, &m); err != nil {
		g.t.Fatalf("agent sent %q: %v", line, err)
	}
	return m
}

func (g *guest) send(m proto.Message) {
	g.t.Helper()
	b, _ := json.Marshal(m)
	g.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := g.conn.Write(append(b, '\n')); err != nil {
		g.t.Fatalf("write to agent: %v", err)
	}
}

// request sends a request and returns the reply with the same id.
func (g *guest) request(typ, id string) proto.Message {
	g.t.Helper()
	g.send(proto.Message{Type: typ, ID: id})
	for {
		m := g.recv(bootTimeout)
		if m.ID == id {
			return m
		}
	}
}

func (g *guest) waitExit(timeout time.Duration) {
	g.t.Helper()
	select {
	case err := <-g.exited:
		if err != nil {
			g.t.Errorf("qemu exited with %v", err)
		}
		g.exited <- err // for the cleanup
	case <-time.After(timeout):
		g.t.Fatalf("qemu still running %s after the power-off request", timeout)
	}
}

// qmpPowerdown sends system_powerdown over QMP.
func (g *guest) qmpPowerdown() {
	g.t.Helper()
	c, err := net.Dial("unix", filepath.Join(g.dir, "qmp.sock"))
	if err != nil {
		g.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadBytes('\n'); err != nil { // greeting
		g.t.Fatal(err)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				g.t.Fatalf("qmp %s: %v", cmd, err)
			}
			if strings.Contains(string(line), `"return"`) {
				break
			}
			if strings.Contains(string(line), `"error"`) {
				g.t.Fatalf("qmp %s: %s", cmd, line)
			}
		}
	}
}

func TestBootAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	guesttest.RequireQEMU(t)
	img := guesttest.Image(t)

	tests := []struct {
		name string
		stop func(g *guest)
	}{
		{"agent shutdown", func(g *guest) {
			if m := g.request(proto.TypeShutdown, "bye"); m.Type != proto.TypeShutdown {
				t.Errorf("shutdown reply = %+v", m)
			}
		}},
		{"qmp system_powerdown", func(g *guest) { g.qmpPowerdown() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := boot(t, img)
			ready := g.recv(bootTimeout)
			toReady := time.Since(g.started)
			if ready.Type != proto.TypeReady || ready.Info == nil {
				t.Fatalf("first message = %+v", ready)
			}
			info := *ready.Info
			t.Logf("ready %.2fs after QEMU start (guest uptime %.2fs): %+v", toReady.Seconds(), info.UptimeS, info)
			if info.VCPUs != 2 {
				t.Errorf("vcpus = %d, want 2", info.VCPUs)
			}
			if info.MemoryMiB <= 200 || info.MemoryMiB > 256 {
				t.Errorf("memory_mib = %d, want (200, 256]", info.MemoryMiB)
			}
			if info.Hostname != "vgrid-boot-test" || !info.Context {
				t.Errorf("hostname %q context %v; want the seed's", info.Hostname, info.Context)
			}
			if info.DiskBytes != 1<<30 {
				t.Errorf("disk_bytes = %d, want 1 GiB", info.DiskBytes)
			}
			if info.Agent == "" || info.Kernel == "" || info.UptimeS <= 0 {
				t.Errorf("agent %q kernel %q uptime %v", info.Agent, info.Kernel, info.UptimeS)
			}
			if m := g.request(proto.TypePing, "p1"); m.Type != proto.TypePong {
				t.Errorf("ping reply = %+v", m)
			}

			// DHCP runs in the background; ask until the slirp address shows.
			_, slirp, _ := net.ParseCIDR("10.0.2.0/24")
			deadline := time.Now().Add(20 * time.Second)
			addr := ""
			for i := 0; addr == "" && time.Now().Before(deadline); i++ {
				m := g.request(proto.TypeFacts, fmt.Sprintf("f%d", i))
				if m.Type != proto.TypeFacts || m.Info == nil {
					t.Fatalf("facts reply = %+v", m)
				}
				for _, a := range m.Info.Addresses {
					if ip, _, err := net.ParseCIDR(a); err == nil && slirp.Contains(ip) {
						addr = a
					}
				}
				if addr == "" {
					time.Sleep(250 * time.Millisecond)
				}
			}
			if addr == "" {
				t.Errorf("no 10.0.2.0/24 address after 20s")
			} else {
				t.Logf("address %s %.2fs after QEMU start", addr, time.Since(g.started).Seconds())
			}

			tt.stop(g)
			g.waitExit(bootTimeout)

			console, _ := os.ReadFile(filepath.Join(g.dir, "console.log"))
			if !strings.Contains(string(console), "VGRID-USER-DATA hello-from-seed") {
				t.Errorf("user-data output missing from the console:\n%s", console)
			}
		})
	}
}

// TestBootNoDisk checks that the initrd explains a missing root disk on the
// console and powers off instead of hanging.
func TestBootNoDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM and waits out the root disk timeout")
	}
	guesttest.RequireQEMU(t)
	img := guesttest.Image(t)
	dir := t.TempDir()
	console := filepath.Join(dir, "console.log")
	cmd := exec.Command("qemu-system-x86_64",
		"-M", "microvm", "-accel", "tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "file:"+console,
		"-kernel", img.Kernel.Path, "-initrd", img.Initrd.Path,
		"-append", img.Cmdline+" tsc_early_khz="+hostTSCkHz(t))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("qemu: %v", err)
		}
	case <-time.After(2 * bootTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatal("the guest did not power off without a root disk")
	}
	out, _ := os.ReadFile(console)
	if !strings.Contains(string(out), "vgrid-initrd: root disk /dev/vda did not appear") {
		t.Errorf("console has no explanation:\n%s", out)
	}
	t.Logf("powered off %.1fs after start", time.Since(start).Seconds())
}
