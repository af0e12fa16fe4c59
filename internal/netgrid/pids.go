package netgrid

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vgrid/internal/netnsrun"
)

// PIDs lists the processes whose network namespace is the persistent
// namespace name (what `ip netns pids` prints), in increasing order.
func PIDs(name string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(NamespacePath(name), &want); err != nil {
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Ino == want.Ino && st.Dev == want.Dev {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out, nil
}

// Signal sends sig to every process in namespace name and returns the
// PIDs it signalled.
func Signal(name string, sig syscall.Signal) ([]int, error) {
	pids, err := PIDs(name)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill -%d %d: %w", sig, pid, err))
		}
	}
	return pids, errors.Join(errs...)
}

// Busy names the grid's namespaces that still hold processes, with them
// ("vgrid-h1: 1234 (qemu-system-x86), …"); empty if none.
func Busy(c Config) []string {
	c = c.WithDefaults()
	var out []string
	for _, ns := range Namespaces(c.Prefix) {
		pids, err := PIDs(ns)
		if err != nil || len(pids) == 0 {
			continue
		}
		var who []string
		for _, p := range pids {
			who = append(who, fmt.Sprintf("%d (%s)", p, ProcName(p)))
		}
		out = append(out, ns+": "+strings.Join(who, ", "))
	}
	return out
}

// ProcName is the command name of pid ("" if gone).
func ProcName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// InNamespace runs fn on an OS thread moved into the persistent namespace
// name (network namespace only). A process fn starts (exec.Cmd.Start)
// is forked from that thread and so starts in the namespace. The thread
// is moved back afterwards, or, if that fails, discarded.
func InNamespace(name string, fn func() error) error {
	target, err := netns.GetFromPath(NamespacePath(name))
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := netnsrun.Do(target, fn); err != nil {
		return fmt.Errorf("in namespace %s: %w", name, err)
	}
	return nil
}
