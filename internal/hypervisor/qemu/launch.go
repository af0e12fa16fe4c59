package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vgrid/internal/cgroup"
	"vgrid/internal/hypervisor"
)

// joinScript is run by /bin/sh with the cgroup.procs files, "--", then
// QEMU's path and arguments as its positional parameters. It writes its
// own PID into every file and then execs QEMU, so QEMU runs in its cgroups
// from its first instruction: memory it touched before joining would not be
// charged to the group. Everything comes in as arguments, never as script
// text, so no path can inject shell.
const joinScript = `while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"`

// launchTimeout bounds QEMU's start up to the moment it daemonizes.
const launchTimeout = 60 * time.Second

// launch starts QEMU in the group (nil: in the agent's, for the caller to
// move) and returns the daemon's PID and when it
// was exec'd. QEMU daemonizes: the process we start exits once the VM is
// set up, leaving the VM in a session of its own, not our child, so that
// the agent can exit (even by kill -9) without taking guests with it.
// extra goes after Argv's arguments (a resume adds -incoming).
func (d *Driver) launch(ctx context.Context, spec hypervisor.InstanceSpec, p Paths, accel string, cg *cgroup.Group, extra ...string) (int, time.Time, error) {
	for _, f := range []string{p.PIDFile, p.QMP, p.Agent} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, time.Time{}, fmt.Errorf("launch: %w", err)
		}
	}
	if p.SockDir != p.Dir {
		if err := os.MkdirAll(p.SockDir, 0o700); err != nil {
			return 0, time.Time{}, fmt.Errorf("launch: %w", err)
		}
		link := filepath.Join(p.Dir, runLink)
		_ = os.Remove(link)
		_ = os.Symlink(p.SockDir, link) // for people; the driver derives SockDir itself
	}
	// QEMU's stderr until it daemonizes; then QEMU itself writes there (-D).
	logf, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("launch: %w", err)
	}
	defer logf.Close()

	var cmd *exec.Cmd
	if cg != nil {
		args := []string{"-c", joinScript, joinName}
		args = append(args, cg.ProcsFiles()...)
		args = append(args, "--", d.opts.QEMUPath)
		args = append(args, Argv(spec, p, accel, d.tscKHz)...)
		args = append(args, extra...)
		cmd = exec.Command("/bin/sh", args...)
	} else {
		// The caller moves the daemon into its group (restore: a resumed
		// guest runs only once it is in).
		cmd = exec.Command(d.opts.QEMUPath, append(Argv(spec, p, accel, d.tscKHz), extra...)...)
	}
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// A session of its own: signals to the agent's process group (Ctrl-C,
	// a service manager stopping the agent) do not reach the guest.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	startedAt := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, time.Time{}, fmt.Errorf("launch qemu: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	timer := time.NewTimer(launchTimeout)
	defer timer.Stop()
	select {
	case err = <-waited:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = fmt.Errorf("did not daemonize within %s", launchTimeout)
	}
	if err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
		}
		// A daemon that got as far as its pidfile goes too.
		_ = kill(readPID(p.PIDFile), marker(p))
		return 0, time.Time{}, fmt.Errorf("launch qemu: %w%s", err, logTail(p.Log))
	}
	pid := readPID(p.PIDFile)
	if !alive(pid, marker(p)) {
		return 0, time.Time{}, fmt.Errorf("launch qemu: exited right after it started%s", logTail(p.Log))
	}
	return pid, startedAt, nil
}

// logTail returns ": <last lines of QEMU's stderr>" or "".
func logTail(path string) string {
	b, _ := tail(path, 1024)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	return ": " + strings.ReplaceAll(s, "\n", "; ")
}

// marker is what QEMU's command line contains for the instance at p.
func marker(p Paths) string { return p.Dir + string(filepath.Separator) }
