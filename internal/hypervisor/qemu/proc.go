package qemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/hypervisor"
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
	if !running(pid) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(marker))
}

// waitGone waits until the process is gone or d has passed, and reports
// whether it is gone. It waits on a pidfd, which becomes readable the
// moment the process exits (QEMU is not our child after -daemonize, so it
// cannot be waited for otherwise); where pidfd_open is missing (Linux
// before 5.3) it polls /proc every goneWaitPoll.
func waitGone(pid int, marker string, d time.Duration, cancel <-chan struct{}) bool {
	if !alive(pid, marker) {
		return true
	}
	deadline := time.Now().Add(d)
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(fd)
		// The pidfd names whatever process had pid when it was opened:
		// make sure that was still the instance's QEMU.
		if !alive(pid, marker) {
			return true
		}
		if exited, ok := waitPidfd(fd, deadline, cancel); ok {
			if exited {
				waitThreads(pid, deadline)
				return true
			}
			return !alive(pid, marker)
		}
	}
	for {
		if !alive(pid, marker) {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-cancel:
			return !alive(pid, marker)
		case <-time.After(min(left, goneWaitPoll)):
		}
	}
}

// waitThreads waits, until deadline at the latest, for the other threads
// of the exited process pid to be gone: the pidfd says the process exited
// once its main thread has, while QEMU's other threads may still be on
// their way out for some milliseconds, in its cgroup, which cannot be
// removed until they are. (A zombie's /proc/<pid>/task lists the threads
// that are left, itself included.)
func waitThreads(pid int, deadline time.Time) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	for {
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) <= 1 || time.Now().After(deadline) {
			return
		}
		time.Sleep(threadsPoll)
	}
}

// threadsPoll is how often waitThreads looks.
const threadsPoll = 500 * time.Microsecond

// waitPidfd waits until the process of pidfd fd exits (exited true), the
// deadline passes or cancel is closed. ok is false if poll failed.
func waitPidfd(fd int, deadline time.Time, cancel <-chan struct{}) (exited, ok bool) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false, true
		}
		// In slices, to look at cancel; an exit wakes poll at once.
		ms := int((min(left, goneCancelPoll) + time.Millisecond - 1) / time.Millisecond)
		n, err := unix.Poll(fds, ms)
		switch {
		case err == nil && n > 0:
			return true, true
		case err != nil && !errors.Is(err, unix.EINTR):
			return false, false
		}
		select {
		case <-cancel:
			return false, true
		default:
		}
	}
}

// How waitGone checks: without a pidfd, /proc every goneWaitPoll; with
// one, cancel every goneCancelPoll.
const (
	goneWaitPoll   = 25 * time.Millisecond
	goneCancelPoll = 50 * time.Millisecond
)

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

// Process identity. Every QEMU the driver starts says whose it is on its
// own command line: -name guest=vgrid:<root tag>:<id>, where the root tag
// is a short hash of the driver's StateDir (several agents on one machine
// each have their own StateDir, and must not take each other's guests).
// So the driver finds its QEMU processes by scanning /proc, even when an
// instance's directory (pidfile and all) is gone. Processes started before
// the tag existed are recognised by their -pidfile StateDir/<id>/qemu.pid.

// joinName is argv[0] of the shell that puts QEMU in its cgroup and execs
// it (launch.go); until it execs, its command line holds QEMU's arguments.
const joinName = "vgrid-join"

// rootTag is the prefix of the -name of every QEMU of the instances under
// root, followed by the instance ID.
func rootTag(root string) string {
	h := sha256.Sum256([]byte(filepath.Clean(root)))
	return "vgrid:" + hex.EncodeToString(h[:4]) + ":"
}

// guestName is QEMU's -name guest= for the instance at p.
func guestName(p Paths) string {
	return rootTag(filepath.Dir(p.Dir)) + filepath.Base(p.Dir)
}

// instanceOf returns the ID of root's instance whose QEMU has command line
// args, or "" if args are not such a QEMU's.
func instanceOf(args []string, root string) string {
	if len(args) > 3 && args[3] == joinName {
		return ""
	}
	tag := rootTag(root)
	pidPrefix := filepath.Clean(root) + string(filepath.Separator)
	for i := 1; i+1 < len(args); i++ {
		switch args[i] {
		case "-name":
			for _, opt := range strings.Split(args[i+1], ",") {
				if id, ok := strings.CutPrefix(strings.TrimPrefix(opt, "guest="), tag); ok && hypervisor.ValidID(id) {
					return id
				}
			}
		case "-pidfile":
			f := args[i+1]
			if id, ok := strings.CutPrefix(f, pidPrefix); ok && filepath.Base(f) == pidFile {
				if id = filepath.Dir(id); hypervisor.ValidID(id) {
					return id
				}
			}
		}
	}
	return ""
}

// qemuProc is a live QEMU process of one of a driver's instances.
type qemuProc struct {
	PID int
	ID  string
}

// findProcs returns the live (not zombie) QEMU processes of the instances
// under root, found by their command lines, in PID order.
func findProcs(root string) ([]qemuProc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	tag, dir := []byte(rootTag(root)), []byte(filepath.Clean(root)+string(filepath.Separator))
	var out []qemuProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || (!bytes.Contains(cmdline, tag) && !bytes.Contains(cmdline, dir)) {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		if id := instanceOf(args, root); id != "" && running(pid) {
			out = append(out, qemuProc{PID: pid, ID: id})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// running reports whether pid is a process that is not a zombie.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses, so the
	// state is the first field after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	s := stat[i+2]
	return s != 'Z' && s != 'X' && s != 'x'
}

// bootID returns the host's boot ID ("" if unknown): it changes when the
// host restarts, so a driver tells an agent's restart (the page cache
// kept) from a host's.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
