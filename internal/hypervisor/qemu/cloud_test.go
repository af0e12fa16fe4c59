package qemu

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// Environment of TestCloudImage.
const (
	// cloudTestEnv must be 1 for TestCloudImage to run: it builds a Debian
	// cloud image (about a minute, with a Debian mirror) and boots it under
	// TCG (about a minute per boot).
	cloudTestEnv = "VGRID_CLOUD_IMAGE_TEST"
	// cloudImageEnv overrides where the built image is kept.
	cloudImageEnv     = "VGRID_CLOUD_IMAGE"
	defaultCloudImage = "/var/tmp/vgrid-cloud-image/debian-bookworm.qcow2"
)

// TestVendorDataShell checks the vendor-data boothook's shell: it parses,
// and vgrid_info and vgrid_msg, run on this host, print lines the host
// side decodes.
func TestVendorDataShell(t *testing.T) {
	if !strings.HasPrefix(VendorData, "#cloud-boothook\n#!/bin/sh\n") {
		t.Fatalf("vendor-data is not a boothook:\n%.80s", VendorData)
	}
	if got := SeedFiles(testSpec())[SeedVendorData]; string(got) != VendorData {
		t.Errorf("seed vendor-data: got %q, want VendorData", got)
	}
	for _, sh := range []string{"sh", "dash", "bash", "busybox"} {
		path, err := exec.LookPath(sh)
		if err != nil {
			continue
		}
		args := []string{"-n"}
		if sh == "busybox" {
			args = []string{"sh", "-n"}
		}
		cmd := exec.Command(path, args...)
		cmd.Stdin = strings.NewReader(VendorData)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, out)
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip (iproute2) to run the reporter with")
	}

	out, err := exec.Command("sh", "-c", Reporter+`vgrid_msg ready "" "$(vgrid_info)"`).Output()
	if err != nil {
		t.Fatalf("vgrid_info: %v", err)
	}
	var m proto.Message
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("ready line %q: %v", out, err)
	}
	if !bytes.HasSuffix(out, []byte("}\n")) || bytes.Count(out, []byte("\n")) != 1 {
		t.Errorf("ready is not one line: %q", out)
	}
	g := m.Info
	if m.Type != proto.TypeReady || g == nil {
		t.Fatalf("got %+v, want a ready with info", m)
	}
	host, _ := os.Hostname()
	if g.VCPUs < 1 || g.MemoryMiB < 1 || g.Kernel == "" || g.Hostname != host || !g.Context ||
		g.Agent != "cloud-init" || g.UptimeS <= 0 || g.Addresses == nil {
		t.Errorf("implausible facts: %+v (from %s)", *g, out)
	}
	for _, a := range g.Addresses {
		if !strings.Contains(a, "/") {
			t.Errorf("address %q is not a CIDR", a)
		}
	}
	t.Logf("this host's facts: %s", out)

	// Replies echo the request ID, escaped.
	out, err = exec.Command("sh", "-c", Reporter+`vgrid_msg pong 'a"b\c'`).Output()
	if err != nil {
		t.Fatal(err)
	}
	var pong proto.Message
	if err := json.Unmarshal(out, &pong); err != nil || pong.Type != proto.TypePong || pong.ID != `a"b\c` || pong.Info != nil {
		t.Errorf("pong line %q: got %+v, %v", out, pong, err)
	}
}

// TestCloudImage boots an ordinary cloud image, with cloud-init and no
// vgrid guest agent, through the firmware path (q35, SeaBIOS, GRUB from the
// disk): the vendor-data in the seed reports the guest ready, cloud-init
// sets the hostname from meta-data, installs the SSH key and runs the
// user's user-data, a new driver gets the guest's facts, an ACPI power
// button press powers it off, and a restart reports ready again (the
// reporter runs at every boot, not once per instance).
//
// It runs only with VGRID_CLOUD_IMAGE_TEST=1: the image is built with
// scripts/build-cloud-image.sh (debootstrap from a Debian mirror, about a
// minute; cached in VGRID_CLOUD_IMAGE, default
// /var/tmp/vgrid-cloud-image/debian-bookworm.qcow2), and each boot takes
// 40-60 s under TCG.
func TestCloudImage(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a cloud image: slow")
	}
	if os.Getenv(cloudTestEnv) != "1" {
		t.Skipf("set %s=1 to build and boot a Debian cloud image (a few minutes)", cloudTestEnv)
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root (cgroups; loop devices and mounts to build the image)")
	}
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (apt-get install qemu-system-x86 qemu-utils)", bin)
		}
	}
	img := cloudImage(t)

	dir := t.TempDir()
	t.Cleanup(func() {
		hypervisortest.Cleanup(t, func(t *testing.T, dir string) hypervisor.Driver { return newTestDriver(t, dir) }, dir)
	})
	d := newTestDriver(t, dir)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("cloudy-1", img)
	spec.Quantum = model.Quantum{VCPUs: 2, Memory: 512 * model.MiB, Disk: 3 * model.GiB}
	spec.Context = &model.Context{
		Hostname: "cloudy",
		UserData: "#cloud-config\nruncmd:\n - echo cloud-init-user-data-ran > /dev/ttyS0\n",
		SSHKeys:  []string{sshPublicKey(t, "vgrid-cloud-test-key")},
	}
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started %s: pid %d, accel %s", spec.ID, in.PID, in.Accel)

	in = waitCloudGuest(t, d, spec.ID, "first boot")
	g := in.Guest
	if g.VCPUs != spec.Quantum.VCPUs {
		t.Errorf("guest vcpus: got %d, want %d", g.VCPUs, spec.Quantum.VCPUs)
	}
	if want := spec.Quantum.Memory.MiB(); g.MemoryMiB > want || g.MemoryMiB < want*7/10 {
		t.Errorf("guest memory: got %d MiB, want 70-100%% of %d MiB", g.MemoryMiB, want)
	}
	if g.Hostname != "cloudy" {
		t.Errorf("guest hostname: got %q, want %q (meta-data local-hostname)", g.Hostname, "cloudy")
	}
	if g.Agent != "cloud-init" || !g.Context || g.Kernel == "" {
		t.Errorf("guest report: got agent %q, context %v, kernel %q, want cloud-init, true, a kernel", g.Agent, g.Context, g.Kernel)
	}
	if g.DiskBytes != int64(spec.Quantum.Disk) {
		t.Errorf("guest disk: got %d bytes, want %d (the quantum's disk)", g.DiskBytes, int64(spec.Quantum.Disk))
	}
	if !slices.Contains(g.Addresses, "10.0.2.15/24") {
		t.Errorf("guest addresses: got %q, want 10.0.2.15/24 (QEMU user networking's DHCP)", g.Addresses)
	}

	// The user's own user-data ran, untouched by the vendor-data; the SSH
	// key from meta-data was installed (cloud-init prints its comment with
	// its fingerprint); cloud-init found no fault with the seed.
	waitConsole(t, d, spec.ID, "cloud-init-user-data-ran", 3*time.Minute)
	waitConsole(t, d, spec.ID, "vgrid-cloud-test-key", time.Minute)
	waitConsole(t, d, spec.ID, "Cloud-init v. 22", time.Minute)
	log, err := d.ConsoleLog(ctx, spec.ID, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"Invalid cloud-config", "Traceback"} {
		if bytes.Contains(log, []byte(bad)) {
			t.Errorf("console has %q:\n%s", bad, log)
		}
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "Cloud-init v. ") {
			t.Logf("console: %s", strings.TrimSpace(line))
		}
	}

	// A new driver (an agent restart) adopts the guest and asks for its
	// facts: the reporter answers on the new connection.
	d.Close()
	d = newTestDriver(t, dir)
	in = waitCloudGuest(t, d, spec.ID, "adopted")
	if in.Guest.Hostname != "cloudy" || in.Guest.Agent != "cloud-init" {
		t.Errorf("adopted guest report: %+v", *in.Guest)
	}
	stopCloud(t, d, spec.ID)

	// The same instance again: cloud-init does not run per-instance
	// modules again, the reporter runs anyway. Stop right after ready
	// works: the reporter waits for systemd-logind, which handles the
	// power button.
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	waitCloudGuest(t, d, spec.ID, "second boot")
	stopCloud(t, d, spec.ID)
}

// sshPublicKey returns a new ed25519 public key in authorized_keys form.
func sshPublicKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var blob []byte
	for _, field := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(field)))
		blob = append(blob, field...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " " + comment
}

// waitCloudGuest waits up to 5 minutes for the guest's report.
func waitCloudGuest(t *testing.T, d hypervisor.Driver, id, what string) hypervisor.Instance {
	t.Helper()
	const timeout = 5 * time.Minute
	deadline := time.Now().Add(timeout)
	for {
		in, err := d.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if in.Guest != nil {
			b, _ := json.Marshal(in.Guest)
			t.Logf("%s: guest ready %s after its process started: %s", what,
				time.Since(in.StartedAt).Round(100*time.Millisecond), b)
			return in
		}
		if in.State == hypervisor.InstanceStopped || time.Now().After(deadline) {
			log, _ := d.ConsoleLog(context.Background(), id, 8192)
			t.Fatalf("%s: no guest report (state %s, %q) within %s; console:\n%s", what, in.State, in.ExitReason, timeout, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopCloud stops the instance and checks that the guest powered itself
// off (systemd-logind handles the ACPI power button) rather than being
// killed after the timeout.
func stopCloud(t *testing.T, d hypervisor.Driver, id string) {
	t.Helper()
	start := time.Now()
	if err := d.Stop(context.Background(), id, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	in, err := d.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != hypervisor.InstanceStopped || in.ExitReason != "stopped" {
		t.Errorf("after Stop: got %s, %q, want stopped, %q", in.State, in.ExitReason, "stopped")
	}
	log, err := d.ConsoleLog(context.Background(), id, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("reboot: Power down")) {
		t.Errorf("the guest did not power off by itself; console:\n%s", log)
	}
	t.Logf("powered off %s after Stop", time.Since(start).Round(100*time.Millisecond))
}

// cloudImage builds the cloud image (or finds it built and newer than the
// script) and returns it as a firmware-boot image.
func cloudImage(t *testing.T) hypervisor.LocalImage {
	t.Helper()
	root, err := findModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv(cloudImageEnv)
	if out == "" {
		out = defaultCloudImage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "build-cloud-image.sh"), out)
	// SIGTERM lets the script remove its mounts and loop devices.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cannot build the cloud image: %v\n%s", err, b)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cloud image %s (%.1f MiB) ready in %s:\n%s", out, float64(st.Size())/(1<<20),
		time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(string(b)))
	return hypervisor.LocalImage{Name: "debian-cloud", Boot: "firmware", Disk: out, DiskFormat: "qcow2"}
}

// findModuleRoot returns the directory of go.mod above the working
// directory.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
