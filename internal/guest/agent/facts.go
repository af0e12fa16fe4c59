package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vgrid/internal/model"
)

// Version is the agent version reported in GuestInfo.Agent. Release builds
// may set it with -ldflags "-X vgrid/internal/guest/agent.Version=...".
var Version = "0.1.0"

// Facts collects a fresh GuestInfo. root is the filesystem root that /proc
// and /sys are read from ("/" in the guest); hostname, kernel release and
// addresses always come from the running kernel. seedRead becomes Context.
func Facts(root string, seedRead bool) model.GuestInfo {
	info := model.GuestInfo{
		VCPUs:     runtime.NumCPU(),
		Addresses: []string{},
		Context:   seedRead,
		Agent:     Version,
	}
	if b, err := os.ReadFile(filepath.Join(root, "sys/devices/system/cpu/online")); err == nil {
		if n, err := ParseCPUList(string(b)); err == nil && n > 0 {
			info.VCPUs = n
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "proc/meminfo")); err == nil {
		if kb, err := ParseMemTotal(b); err == nil {
			info.MemoryMiB = kb / 1024
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "sys/block/vda/size")); err == nil {
		if sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			info.DiskBytes = sectors * 512
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "proc/uptime")); err == nil {
		if up, err := ParseUptime(string(b)); err == nil {
			info.UptimeS = up
		}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		info.Hostname = unix.ByteSliceToString(uts.Nodename[:])
		info.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	info.Addresses = interfaceAddresses()
	return info
}

// ParseCPUList counts the CPUs in a kernel CPU list such as "0-3,5".
func ParseCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("parse cpu list: empty")
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("parse cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("parse cpu list %q: %w", s, err)
			}
		}
		if a < 0 || b < a {
			return 0, fmt.Errorf("parse cpu list %q: bad range %q", s, part)
		}
		n += b - a + 1
	}
	return n, nil
}

// ParseMemTotal returns MemTotal in KiB from the contents of /proc/meminfo.
func ParseMemTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "MemTotal" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, fmt.Errorf("parse meminfo: empty MemTotal")
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse meminfo: %w", err)
		}
		if len(fields) > 1 && fields[1] != "kB" {
			return 0, fmt.Errorf("parse meminfo: unknown unit %q", fields[1])
		}
		return kb, nil
	}
	return 0, fmt.Errorf("parse meminfo: no MemTotal line")
}

// ParseUptime returns the first field of /proc/uptime in seconds.
func ParseUptime(s string) (float64, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return 0, fmt.Errorf("parse uptime: empty")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return 0, fmt.Errorf("parse uptime: %w", err)
	}
	return v, nil
}

// usableAddress reports whether an interface address is worth reporting:
// not loopback, not link-local, not unspecified.
func usableAddress(ip net.IP) bool {
	return ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() &&
		!ip.IsUnspecified() && !ip.IsMulticast()
}

// interfaceAddresses lists the CIDRs of the up, non-loopback interfaces,
// IPv4 first, each group sorted.
func interfaceAddresses() []string {
	out := []string{}
	ifaces, err := net.Interfaces()
	if err != nil {
		return out
	}
	var v4, v6 []string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !usableAddress(ipn.IP) {
				continue
			}
			if ipn.IP.To4() != nil {
				v4 = append(v4, ipn.String())
			} else {
				v6 = append(v6, ipn.String())
			}
		}
	}
	sort.Strings(v4)
	sort.Strings(v6)
	return append(append(out, v4...), v6...)
}
