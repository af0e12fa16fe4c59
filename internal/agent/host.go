package agent

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vgrid/internal/model"
)

// HostReserve is memory kept back for the host itself.
const HostReserve = model.GiB

// DefaultBandwidth is the network bandwidth a host offers its guests'
// caps (the calendar counts it like CPU) when it is not given (--bandwidth):
// 10 Gbit/s, what a veth, a virtio NIC or a 10GbE port carries. The speed
// of a real NIC is not read: in a network namespace it is not the host's.
const DefaultBandwidth = 10_000_000_000 / 8 * model.ByteSize(1)

// describeHost fills in what the node record leaves out: name from the
// host name, CPUs from the online CPUs, memory from MemTotal less
// HostReserve, disk from the free space under dataDir.
func describeHost(n model.Node, dataDir string) (model.Node, error) {
	if n.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return n, fmt.Errorf("host name: %w", err)
		}
		n.Name = strings.ToLower(strings.Split(h, ".")[0])
	}
	if n.Capacity.MilliCPU == 0 {
		n.Capacity.MilliCPU = int64(runtime.NumCPU()) * 1000
	}
	if n.Capacity.Memory == 0 {
		total, err := MemTotal()
		if err != nil {
			return n, err
		}
		n.Capacity.Memory = max(total-HostReserve, total/2)
	}
	if n.Capacity.Bandwidth == 0 {
		n.Capacity.Bandwidth = DefaultBandwidth
	}
	if n.Capacity.Disk == 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(dataDir, &st); err != nil {
			return n, fmt.Errorf("statfs %s: %w", dataDir, err)
		}
		n.Capacity.Disk = model.ByteSize(st.Bavail) * model.ByteSize(st.Bsize)
	}
	return n, nil
}

// MemTotal is the machine's memory (MemTotal of /proc/meminfo).
func MemTotal() (model.ByteSize, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("meminfo: %w", err)
			}
			return model.ByteSize(kb) * model.KiB, nil
		}
	}
	return 0, fmt.Errorf("meminfo: no MemTotal")
}
