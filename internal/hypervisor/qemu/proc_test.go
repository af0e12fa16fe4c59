package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
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
