package qemu

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readPID reads a pidfile; 0 when there is none.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// alive reports whether pid is a live (not zombie) process whose command
// line contains marker. After -daemonize QEMU is not our child, so we
// cannot wait for it; and a PID may be reused by an unrelated process
// after QEMU exits: the marker (the instance directory, which appears in
// QEMU's arguments) tells them apart.
func alive(pid int, marker string) bool {
	if pid <= 0 {
		return false
	}
	proc := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses, so the
	// state is the first field after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	if s := stat[i+2]; s == 'Z' || s == 'X' || s == 'x' {
		return false
	}
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(marker))
}

// waitGone polls until the process is gone or d has passed.
func waitGone(pid int, marker string, d time.Duration, cancel <-chan struct{}) bool {
	deadline := time.Now().Add(d)
	for {
		if !alive(pid, marker) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-cancel:
			return !alive(pid, marker)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL to pid if it is still the process marker names.
func kill(pid int, marker string) error {
	if !alive(pid, marker) {
		return nil
	}
	err := syscall.Kill(pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
