package qemu

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/guest/guesttest"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// TestVolumeInGuest attaches a network volume (a qcow2 served by qemu-nbd
// over TLS with client certificates on 127.0.0.1) to a guest: the guest
// agent finds it by its serial, formats it (it is new) and mounts it at
// /data; a file written there and synced survives the NBD server being
// killed and started again while the guest runs (QEMU reconnects and the
// guest's next write goes through); a second guest attaching the same
// export read-only reads both files, and its writes fail (EROFS; the disk
// itself is read-only); and on the host the files are in the qcow2.
func TestVolumeInGuest(t *testing.T) {
	_, d, img := hostSetup(t)
	for _, bin := range []string{"qemu-nbd", "qemu-img", "debugfs"} {
		if _, err := exec.LookPath(bin); err != nil {
			guesttest.Skip(t, "%s is not installed", bin)
		}
	}
	ctx := hypervisortest.Context(t)
	dir := t.TempDir()
	serverTLS, clientTLS := writeTestPKI(t, dir)
	vol := filepath.Join(dir, "vol.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", vol, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	port := freeTCPPort(t)
	srv := startNBDServer(t, serverTLS, vol, port)

	attach := hypervisor.VolumeAttachment{Name: "data", Serial: "vgv-test-1", Host: "127.0.0.1", Port: port,
		Export: "vol", Mount: "/data", TLSDir: clientTLS}
	start := time.Now()
	rw := hypervisortest.Spec("vol-rw", img)
	rw.Quantum.Memory = 128 * model.MiB
	rw.Volumes = []hypervisor.VolumeAttachment{attach}
	if _, err := d.Start(ctx, rw); err != nil {
		t.Fatal(err)
	}
	hypervisortest.WaitGuest(t, d, rw.ID)
	t.Logf("guest with a new volume ready after %s", time.Since(start).Round(time.Millisecond))
	out, code := execIn(t, d, rw.ID, "sh", "-c", `awk '$2 == "/data" { print $1, $3, substr($4, 1, 2) }' /proc/mounts; for s in /sys/block/vd*/serial; do echo "$s $(cat $s)"; done`)
	if lines := strings.Split(out, "\n"); code != 0 || !strings.HasPrefix(lines[0], "/dev/vd") || !strings.HasSuffix(lines[0], " ext4 rw") ||
		!strings.Contains(out, "/serial vgv-test-1") {
		t.Fatalf("/data in the guest (exit %d):\n%s", code, out)
	}
	if out, code := execIn(t, d, rw.ID, "sh", "-c", "echo hello-volume > /data/hello && sync"); code != 0 {
		t.Fatalf("write on the volume: exit %d: %s", code, out)
	}

	// The storage daemon dies and comes back on the same port: QEMU
	// reconnects (reconnect-delay) and the guest's I/O goes on.
	srv.crash(t)
	srv = startNBDServer(t, serverTLS, vol, port)
	t0 := time.Now()
	if out, code := execIn(t, d, rw.ID, "sh", "-c", "echo after-restart > /data/second && sync"); code != 0 {
		t.Fatalf("write after the server restarted: exit %d: %s", code, out)
	}
	t.Logf("write after the NBD server restarted took %s", time.Since(t0).Round(time.Millisecond))
	if err := d.Stop(ctx, rw.ID, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// The same export, read-only, in another guest.
	ro := hypervisortest.Spec("vol-ro", img)
	ro.Quantum.Memory = 128 * model.MiB
	attach.ReadOnly = true
	ro.Volumes = []hypervisor.VolumeAttachment{attach}
	if _, err := d.Start(ctx, ro); err != nil {
		t.Fatal(err)
	}
	hypervisortest.WaitGuest(t, d, ro.ID)
	if out, code := execIn(t, d, ro.ID, "cat", "/data/hello", "/data/second"); code != 0 || out != "hello-volume\nafter-restart\n" {
		t.Errorf("read-only guest reads (exit %d) %q, want the two lines written by the first", code, out)
	}
	out, code = execIn(t, d, ro.ID, "sh", "-c", "echo x > /data/third")
	if code == 0 || !strings.Contains(out, "Read-only file system") {
		t.Errorf("write on a read-only volume: exit %d, %q; want EROFS", code, out)
	}
	// Not only the mount: the disk is read-only, so remounting does not help.
	out, code = execIn(t, d, ro.ID, "sh", "-c", `dev=$(awk '$2 == "/data" { print $1 }' /proc/mounts); cat /sys/block/${dev#/dev/}/ro; mount -o remount,rw /data`)
	if code == 0 || !strings.HasPrefix(out, "1\n") {
		t.Errorf("read-only disk: exit %d, %q; want ro=1 and the remount refused", code, out)
	}
	if err := d.Stop(ctx, ro.ID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	srv.crash(t)

	// On the host: the files are in the qcow2's ext filesystem.
	raw := filepath.Join(dir, "vol.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", vol, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	for file, want := range map[string]string{"/hello": "hello-volume\n", "/second": "after-restart\n"} {
		got, err := exec.Command("debugfs", "-R", "cat "+file, raw).Output()
		if err != nil || string(got) != want {
			t.Errorf("%s in the volume: %q, %v; want %q", file, got, err, want)
		}
	}
	if got, _ := exec.Command("debugfs", "-R", "stat /third", raw).CombinedOutput(); !strings.Contains(string(got), "not found") {
		t.Errorf("/third exists in the volume:\n%s", got)
	}
	t.Logf("done after %s", time.Since(start).Round(time.Millisecond))
}

// TestVolumeLiveMigration moves a guest with a mounted volume live to
// another host (two drivers on this machine): the destination's QEMU
// connects to the same export (shared storage), the disk mirror copies
// the root disk only (16 MiB written on the volume before the move are
// not sent), and at the destination the guest reads what it wrote on the
// volume at the source and goes on writing there.
func TestVolumeLiveMigration(t *testing.T) {
	requireHost(t)
	for _, bin := range []string{"qemu-nbd", "qemu-img", "debugfs"} {
		if _, err := exec.LookPath(bin); err != nil {
			guesttest.Skip(t, "%s is not installed", bin)
		}
	}
	img := localImage(guesttest.Image(t))
	_, _, dA, dB := hostPair(t)
	ctx := hypervisortest.Context(t)
	dir := t.TempDir()
	serverTLS, clientTLS := writeTestPKI(t, dir)
	vol := filepath.Join(dir, "vol.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", vol, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	port := freeTCPPort(t)
	srv := startNBDServer(t, serverTLS, vol, port)
	spec := hypervisortest.Spec("vol-mig", img)
	spec.Quantum.Memory = 128 * model.MiB
	spec.Volumes = []hypervisor.VolumeAttachment{{Name: "data", Serial: "vgv-mig", Host: "127.0.0.1", Port: port,
		Export: "vol", Mount: "/data", TLSDir: clientTLS}}
	if _, err := dA.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	hypervisortest.WaitGuest(t, dA, spec.ID)
	const volumeMiB = 16
	if out, code := execIn(t, dA, spec.ID, "sh", "-c",
		"echo at-the-source > /data/a && dd if=/dev/urandom of=/data/big bs=1M count="+strconv.Itoa(volumeMiB)+" 2>/dev/null && sync"); code != 0 {
		t.Fatalf("write at the source: exit %d: %s", code, out)
	}
	ep, err := dB.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	res, err := dA.MigrateOut(ctx, spec.ID, ep, hypervisor.MigrateOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrated: total %s, downtime %s, disk %.1f MiB", res.Total.Round(time.Millisecond), res.Downtime, float64(res.DiskBytes)/(1<<20))
	if res.DiskBytes >= volumeMiB<<20 {
		t.Errorf("the mirror sent %d bytes: the volume's %d MiB were copied too?", res.DiskBytes, volumeMiB)
	}
	if _, err := dB.FinishIncoming(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	hypervisortest.WaitGuest(t, dB, spec.ID)
	if out, code := execIn(t, dB, spec.ID, "sh", "-c", "cat /data/a && echo at-the-destination > /data/b && sync"); code != 0 || out != "at-the-source\n" {
		t.Errorf("at the destination (exit %d): %q, want what the source wrote, and a write", code, out)
	}
	if err := dB.Stop(ctx, spec.ID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	srv.crash(t)
	raw := filepath.Join(dir, "vol.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", vol, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	if got, err := exec.Command("debugfs", "-R", "cat /b", raw).Output(); err != nil || string(got) != "at-the-destination\n" {
		t.Errorf("/b in the volume: %q, %v", got, err)
	}
}

// nbdServer is a qemu-nbd serving one qcow2 over TLS.
type nbdServer struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startNBDServer starts qemu-nbd serving file as export "vol" on
// 127.0.0.1:port, TLS with client certificates (tlsDir holds the server's
// credentials), persistent (it outlives its clients), and waits until it
// listens. It is killed when the test ends.
func startNBDServer(t *testing.T, tlsDir, file string, port int) *nbdServer {
	t.Helper()
	cmd := exec.Command("qemu-nbd",
		"--object", "tls-creds-x509,id=tls0,endpoint=server,verify-peer=on,dir="+optPath(tlsDir),
		"--tls-creds=tls0", "--format=qcow2", "--export-name=vol", "--bind=127.0.0.1",
		"--port="+strconv.Itoa(port), "--persistent", "--shared=4", file)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu-nbd: %v", err)
	}
	s := &nbdServer{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.crash(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("qemu-nbd exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-nbd does not listen on %d after 10s: %s", port, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// crash kills the server (SIGKILL) and waits for it to be gone.
func (s *nbdServer) crash(t *testing.T) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("qemu-nbd %d survived SIGKILL", s.cmd.Process.Pid)
	}
}

// freeTCPPort returns a port that was free on 127.0.0.1 a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeTCPPortPair returns a port P such that P and P+1 were free on
// 127.0.0.1 a moment ago, below the kernel's ephemeral range (from
// 32768), where the tests running beside this one (each listening on
// port 0, and their connections) do not take ports: P+1 next to a port
// from the ephemeral range was once taken by the time it was used.
func freeTCPPortPair(t *testing.T) int {
	t.Helper()
	for range 200 {
		p := 20000 + mrand.IntN(12000)
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	t.Fatal("no two free ports in a row found on 127.0.0.1")
	return 0
}

// writeTestPKI makes a CA and, signed by it, a server certificate for
// 127.0.0.1 (serverAuth) and a client certificate (clientAuth), all
// ECDSA P-256, and writes them as QEMU's tls-creds-x509 wants them: the
// server's directory with ca-cert.pem, server-cert.pem, server-key.pem,
// the client's with ca-cert.pem, client-cert.pem, client-key.pem.
func writeTestPKI(t *testing.T, dir string) (serverDir, clientDir string) {
	t.Helper()
	now := time.Now()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vgrid test volume CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, []byte) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			BasicConstraintsValid: true,
			// QEMU checks a critical key usage for both of these.
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	srvCert, srvKey := leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	cliCert, cliKey := leaf(3, "vgrid test host", x509.ExtKeyUsageClientAuth, nil)
	serverDir, clientDir = filepath.Join(dir, "server-tls"), filepath.Join(dir, "client-tls")
	for d, files := range map[string]map[string][]byte{
		serverDir: {"ca-cert.pem": caPEM, "server-cert.pem": srvCert, "server-key.pem": srvKey},
		clientDir: {"ca-cert.pem": caPEM, "client-cert.pem": cliCert, "client-key.pem": cliKey},
	} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(d, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return serverDir, clientDir
}
