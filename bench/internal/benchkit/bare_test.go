package benchkit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/qemu"
	"vgrid/internal/model"
	"vgrid/internal/testenv"
)

func TestReadPID(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content *string // nil: no file
		want    int
		wantErr bool
	}{
		{"with a newline", ptr("1234\n"), 1234, false},
		{"with spaces", ptr("  42 "), 42, false},
		{"not a number", ptr("abc\n"), 0, true},
		{"empty", ptr(""), 0, true},
		{"missing", nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".pid")
			if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadPID(path)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ReadPID = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestQEMUAlive(t *testing.T) {
	// A shell whose command line holds "qemu" and the mark; the trailing
	// ":" keeps the shell from exec'ing sleep in its place.
	cmd := exec.Command("sh", "-c", "sleep 30; :", "qemu-mark-/some/dir/")
	if err := cmd.Start(); err != nil {
		testenv.Skip(t, "no sh: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	// The shell's command line is in /proc once it has exec'd.
	for deadline := time.Now().Add(5 * time.Second); !QEMUAlive(pid, "/some/dir/") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		pid  int
		mark string
		want bool
	}{
		{"qemu with the mark", pid, "/some/dir/", true},
		{"qemu without the mark", pid, "/other/dir/", false},
		{"not qemu", os.Getpid(), "/some/dir/", false},
		{"pid 0", 0, "", false},
		{"negative pid", -1, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := QEMUAlive(tc.pid, tc.mark); got != tc.want {
				t.Errorf("QEMUAlive(%d, %q) = %v, want %v", tc.pid, tc.mark, got, tc.want)
			}
		})
	}
	cmd.Process.Kill()
	cmd.Wait()
	if QEMUAlive(pid, "/some/dir/") {
		t.Errorf("QEMUAlive(%d) after the process ended = true", pid)
	}
}

func TestWaitPidfd(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sleep   string
		timeout time.Duration
		wantErr bool
	}{
		{"exits in time", "0.05", 10 * time.Second, false},
		{"still running", "30", 50 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sleep", tc.sleep)
			if err := cmd.Start(); err != nil {
				testenv.Skip(t, "no sleep: %v", err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
			if errors.Is(err, unix.ENOSYS) {
				testenv.Skip(t, "no pidfd_open: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pidfd)
			if err := WaitPidfd(pidfd, tc.timeout); (err != nil) != tc.wantErr {
				t.Errorf("WaitPidfd = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestRemoveRuntimeFiles(t *testing.T) {
	dir := t.TempDir()
	p := qemu.Paths{Dir: dir, PIDFile: filepath.Join(dir, "qemu.pid"), QMP: filepath.Join(dir, "qmp.sock"),
		Agent: filepath.Join(dir, "agent.sock"), Disk: filepath.Join(dir, "disk.qcow2")}
	for _, f := range []string{p.PIDFile, p.QMP, p.Agent, p.Disk} {
		if err := os.WriteFile(f, []byte(strconv.Itoa(1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	RemoveRuntimeFiles(p)
	for _, f := range []string{p.PIDFile, p.QMP, p.Agent} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s after RemoveRuntimeFiles: %v, want it gone", f, err)
		}
	}
	if _, err := os.Stat(p.Disk); err != nil {
		t.Errorf("the disk after RemoveRuntimeFiles: %v, want it kept", err)
	}
	RemoveRuntimeFiles(p) // nothing left to remove: no panic, nothing to report
}

func TestHandoverCommand(t *testing.T) {
	h := &Handover{Spec: qemuSpec(), Paths: qemu.Paths{Dir: "/a"}, Accel: qemu.AccelTCG, QEMU: "/usr/bin/qemu-system-x86_64"}
	p := testPaths("/b")
	cmd := h.Command(p, "-incoming", "defer")
	if cmd.Path != h.QEMU || cmd.Dir != "/b" {
		t.Errorf("Command: path %s dir %s, want %s in /b", cmd.Path, cmd.Dir, h.QEMU)
	}
	argv := qemu.Argv(h.Spec, p, h.Accel, h.TSCkHz)
	if got, want := len(cmd.Args), 1+len(argv)+2; got != want {
		t.Fatalf("Command: %d arguments, want %d: %q", got, want, cmd.Args)
	}
	for i, a := range argv {
		if cmd.Args[1+i] != a {
			t.Errorf("argument %d: %q, want the driver's %q", 1+i, cmd.Args[1+i], a)
		}
	}
	if tail := cmd.Args[len(cmd.Args)-2:]; tail[0] != "-incoming" || tail[1] != "defer" {
		t.Errorf("Command ends with %q, want -incoming defer", tail)
	}
}

func qemuSpec() hypervisor.InstanceSpec {
	return hypervisor.InstanceSpec{ID: "bk-1", Hostname: "bk-1", Quantum: model.Quantum{VCPUs: 1, Memory: 128 * model.MiB},
		Image: hypervisor.LocalImage{Name: "img", Boot: "direct", Disk: "/i/disk", DiskFormat: "raw", Kernel: "/i/vmlinuz"}}
}

func testPaths(dir string) qemu.Paths {
	j := func(name string) string { return filepath.Join(dir, name) }
	return qemu.Paths{Dir: dir, Spec: j("spec.json"), State: j("state.json"), Disk: j("disk.qcow2"), Seed: j("cidata.iso"),
		Console: j("console.log"), PIDFile: j("qemu.pid"), Log: j("qemu.log"), Intent: j("intent.json"), SockDir: dir,
		QMP: j("qmp.sock"), Agent: j("agent.sock")}
}
