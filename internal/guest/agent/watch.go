package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// defaultWatchEvery is how often the agent looks at its machine for
// changes to report unasked (Config.WatchEvery).
const defaultWatchEvery = time.Second

// machineState is what the agent watches of its machine: the host changes
// it while the guest runs (the balloon moves MemTotal, the root disk is
// grown), and the host learns of a change from a facts message the guest
// sends unasked. Fields the guest cannot read stay zero.
type machineState struct {
	memTotalKB  int64
	diskSectors int64
	cpusOnline  string
}

// readMachineState reads the machine's state under root.
func readMachineState(root string) machineState {
	var s machineState
	if b, err := os.ReadFile(filepath.Join(root, "proc/meminfo")); err == nil {
		s.memTotalKB, _ = ParseMemTotal(b)
	}
	if b, err := os.ReadFile(filepath.Join(root, "sys/block/vda/size")); err == nil {
		s.diskSectors, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if b, err := os.ReadFile(filepath.Join(root, "sys/devices/system/cpu/online")); err == nil {
		s.cpusOnline = strings.TrimSpace(string(b))
	}
	return s
}

// watchMachine looks at the machine every a.watchEvery until ctx ends.
// When the root disk grew, it grows the root filesystem to fill it (in a
// real guest: the host may have grown the disk while no command of its
// reached the guest); when anything changed, it tells Serve to send the
// host fresh facts (a.changed holds one pending change: the host reads
// the latest facts, not every step).
func (a *Agent) watchMachine(ctx context.Context) {
	last := readMachineState(a.root)
	t := time.NewTicker(a.watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := readMachineState(a.root)
		if now == last {
			continue
		}
		if now.diskSectors > last.diskSectors && a.root == "/" {
			if grew, err := growRoot(""); err != nil {
				a.log.Printf("grow root filesystem: %v", err)
			} else if grew {
				a.log.Printf("root filesystem grown to fill the disk (%d bytes)", now.diskSectors*512)
			}
		}
		last = now
		select {
		case a.changed <- struct{}{}:
		default:
		}
	}
}
