package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAlive(t *testing.T) {
	self := os.Getpid()
	exe, _ := os.Executable()
	if !alive(self, filepath.Base(exe)) {
		t.Errorf("this process with its own name: got dead")
	}
	if alive(self, "/no/such/instance/") {
		t.Errorf("this process with another marker: got alive (pid reuse guard)")
	}
	if alive(0, "") || alive(-1, "") {
		t.Errorf("pid <= 0: got alive")
	}
	// A zombie (exited, not reaped) is dead.
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	if !waitGone(pid, "", 5*time.Second, nil) {
		t.Errorf("zombie %d: got alive", pid)
	}
}

func TestReadPID(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		content string
		want    int
	}{
		{"1234\n", 1234}, {"  77 ", 77}, {"", 0}, {"x", 0}, {"-5", 0},
	}
	for _, tt := range tests {
		f := filepath.Join(dir, "pid")
		os.WriteFile(f, []byte(tt.content), 0o644)
		if got := readPID(f); got != tt.want {
			t.Errorf("readPID(%q): got %d, want %d", tt.content, got, tt.want)
		}
	}
	if got := readPID(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("missing file: got %d", got)
	}
}

// rootHash is the hex of the first 4 bytes of sha256(root): the tag of
// root's QEMU processes, computed independently of rootTag.
func rootHash(root string) string {
	h := sha256.Sum256([]byte(root))
	return hex.EncodeToString(h[:4])
}

func TestInstanceOf(t *testing.T) {
	root := "/var/lib/vgrid/instances"
	p := instancePaths(filepath.Join(root, "ws-1"), DefaultRunDir)
	spec := testSpec()
	argv := append([]string{"/usr/bin/qemu-system-x86_64"}, Argv(spec, p, AccelTCG, 0)...)
	if got := instanceOf(argv, root); got != "ws-1" {
		t.Errorf("vgrid's own argv: got %q, want ws-1", got)
	}
	if got := argAfter(argv, "-name", 0); !strings.HasPrefix(got, "guest=vgrid:"+rootHash(root)+":ws-1,") {
		t.Errorf("-name %q does not carry the root's tag", got)
	}
	if got := instanceOf(argv, "/var/lib/other"); got != "" {
		t.Errorf("another root's process: got %q, want none", got)
	}
	if got := instanceOf(argv, root+"/"); got != "ws-1" {
		t.Errorf("root with a trailing slash: got %q, want ws-1", got)
	}
	// The shell that execs QEMU carries the same arguments until it does.
	wrapper := append([]string{"/bin/sh", "-c", joinScript, joinName, "/sys/fs/cgroup/cpu/x/cgroup.procs", "--"}, argv...)
	if got := instanceOf(wrapper, root); got != "" {
		t.Errorf("the join shell: got %q, want none", got)
	}
	// A QEMU started before the tag existed: found by its pidfile.
	legacy := []string{"qemu-system-x86_64", "-name", "ws-2,process=vgrid-ws-2", "-pidfile", root + "/ws-2/qemu.pid", "-daemonize"}
	if got := instanceOf(legacy, root); got != "ws-2" {
		t.Errorf("legacy argv: got %q, want ws-2", got)
	}
	for _, args := range [][]string{
		{"qemu-system-x86_64", "-name", "vgrid:" + rootHash(root) + ":Bad_ID"},
		{"qemu-system-x86_64", "-pidfile", root + "/ws-3/other.pid"},
		{"qemu-system-x86_64", "-pidfile", root + "/a/b/qemu.pid"},
		{"sleep", "100"},
		{"-name"},
	} {
		if got := instanceOf(args, root); got != "" {
			t.Errorf("%q: got %q, want none", args, got)
		}
	}
}

// TestFindProcs finds a process whose command line carries an instance's
// tag, and not once it is a zombie.
func TestFindProcs(t *testing.T) {
	root := t.TempDir()
	p := instancePaths(filepath.Join(root, "fp-1"), DefaultRunDir)
	// A shell whose command line carries QEMU's -name (it waits for its
	// sleep, so it stays with that command line).
	cmd := exec.Command("/bin/sh", "-c", "sleep 30; :", "sh", "-name", "guest="+guestName(p)+",process=vgrid-fp-1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	want := []qemuProc{{PID: cmd.Process.Pid, ID: "fp-1"}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := findProcs(root)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, _ := findProcs(t.TempDir()); len(got) != 0 {
		t.Errorf("another root: got %v, want none", got)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); ; {
		got, _ := findProcs(root)
		if len(got) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed (zombie) process still found: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
