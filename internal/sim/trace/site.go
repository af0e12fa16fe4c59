package trace

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Workload is what a trace file holds: its leases and, for an LWF file
// with a <site> element, the grid it was written for.
type Workload struct {
	Leases []Lease
	Site   *Site // nil: the file does not describe one
}

// Site is the grid an LWF file describes in its <site> element:
//
//	<site>
//	  <resource-types names="CPU Memory"/>
//	  <nodes>
//	    <node-set numnodes="4">
//	      <res type="CPU" amount="100"/>
//	      <res type="Memory" amount="1024"/>
//	    </node-set>
//	  </nodes>
//	</site>
//
// Amounts are per host, in the units of lease requests: CPU 100 is one
// core (a repeated CPU res is one more core), Memory and Disk are MiB.
// The simulator models identical hosts, so every node-set must describe
// the same host (their counts add up); a site of different hosts is an
// error.
type Site struct {
	Hosts     int
	CPUs      float64 // per host
	MemoryMiB int64   // per host
	DiskMiB   int64   // per host; 0: not given
}

// String describes the site briefly: "4 hosts of 1 CPU, 1024 MiB".
func (s Site) String() string {
	str := fmt.Sprintf("%d hosts of %s CPU, %d MiB", s.Hosts, trimFloat(s.CPUs), s.MemoryMiB)
	if s.DiskMiB > 0 {
		str += fmt.Sprintf(", %d MiB disk", s.DiskMiB)
	}
	return str
}

func trimFloat(f float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", f), "0"), ".")
}

// site checks and converts a decoded <site>; errors name the element and
// attribute at fault.
func (x *lwfSite) site() (Site, error) {
	var declared map[string]bool
	if x.Types != nil {
		if x.Types.Names == nil {
			return Site{}, errors.New("<resource-types>: missing names attribute")
		}
		declared = map[string]bool{}
		for _, n := range strings.Fields(*x.Types.Names) {
			declared[strings.ToLower(n)] = true
		}
	}
	if x.Nodes == nil || len(x.Nodes.Sets) == 0 {
		return Site{}, errors.New("missing <nodes><node-set>")
	}
	var s Site
	var hosts int64
	for i, set := range x.Nodes.Sets {
		where := fmt.Sprintf("<nodes>: node-set %d", i+1)
		if set.NumNodes == nil {
			return Site{}, fmt.Errorf("%s: missing numnodes attribute", where)
		}
		n, err := lwfCount(*set.NumNodes)
		if err != nil || n == 0 {
			return Site{}, fmt.Errorf("%s: numnodes: %q is not a positive whole number", where, *set.NumNodes)
		}
		hosts += n
		if hosts > math.MaxInt32 {
			return Site{}, fmt.Errorf("%s: numnodes: more than %d hosts in all", where, math.MaxInt32)
		}
		var h Site
		for _, res := range set.Res {
			typ := strings.ToLower(strings.TrimSpace(res.Type))
			if typ == "" {
				return Site{}, fmt.Errorf("%s: <res>: missing type attribute", where)
			}
			if declared != nil && !declared[typ] {
				return Site{}, fmt.Errorf("%s: res %s: type not in <resource-types names=%q>", where, res.Type, *x.Types.Names)
			}
			a, err := parseNum([]byte(strings.TrimSpace(res.Amount)))
			if err != nil || a < 0 || a > maxCount {
				return Site{}, fmt.Errorf("%s: res %s: amount %q is not a number from 0 to %d", where, res.Type, res.Amount, int64(maxCount))
			}
			switch typ {
			case "cpu":
				h.CPUs += a / 100
			case "memory":
				h.MemoryMiB += int64(math.Ceil(a))
			case "disk":
				h.DiskMiB += int64(math.Ceil(a))
			}
		}
		if h.CPUs <= 0 {
			return Site{}, fmt.Errorf("%s: no <res type=\"CPU\"> with an amount above 0", where)
		}
		if h.MemoryMiB <= 0 {
			return Site{}, fmt.Errorf("%s: no <res type=\"Memory\"> with an amount above 0", where)
		}
		if i > 0 && (h.CPUs != s.CPUs || h.MemoryMiB != s.MemoryMiB || h.DiskMiB != s.DiskMiB) {
			h.Hosts, s.Hosts = int(n), int(hosts-n)
			return Site{}, fmt.Errorf("%s (%s) differs from node-set 1 (%s): the simulator models identical hosts", where, h, s)
		}
		s.CPUs, s.MemoryMiB, s.DiskMiB = h.CPUs, h.MemoryMiB, h.DiskMiB
	}
	s.Hosts = int(hosts)
	return s, nil
}
