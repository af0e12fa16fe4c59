package sched

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"vgrid/internal/model"
)

// Host is one host's capacity and what is committed on it.
type Host struct {
	Name     string
	Capacity model.Resources
	Labels   map[string]string
	// Ready is false for hosts whose agent is not reachable: they are skipped.
	Ready bool
	// Commitments are the workspaces holding resources on the host.
	Commitments []Commitment
}

// Commitment is a workspace holding resources on a host until Until.
type Commitment struct {
	Workspace string // project/name, for messages
	Resources model.Resources
	Until     time.Time // zero: no known end
}

// Request is what a workspace asks for.
type Request struct {
	Workspace string
	Resources model.Resources
}

// Decision is where to run.
type Decision struct {
	Host string
}

// Shortfall says how much of one resource was missing on the best host.
type Shortfall struct {
	Resource  string // cpu, memory or disk
	Requested int64
	Free      int64 // the most free on any ready host
	Host      string
}

// NoFitError is the refusal: what was short, and when it frees up.
type NoFitError struct {
	Request    Request
	Shortfalls []Shortfall
	// FreesAt is the earliest time at which some host would have room, as
	// known from the commitments' ends; zero if never (e.g. too big for any host).
	FreesAt time.Time
	// FreedBy names the commitments whose end makes room at FreesAt.
	FreedBy []string
	NoHosts bool
}

func (e *NoFitError) Error() string {
	if e.NoHosts {
		return "no ready host: start a host agent (vgrid agent) or wait for one to register"
	}
	var b strings.Builder
	b.WriteString("insufficient capacity:")
	for i, s := range e.Shortfalls {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s: requested %s, at most %s free (host %s), short by %s",
			s.Resource, fmtAmount(s.Resource, s.Requested), fmtAmount(s.Resource, s.Free), s.Host,
			fmtAmount(s.Resource, s.Requested-s.Free))
	}
	if !e.FreesAt.IsZero() {
		fmt.Fprintf(&b, "; room frees up at %s when %s ends", e.FreesAt.UTC().Format(time.RFC3339), strings.Join(e.FreedBy, ", "))
	} else {
		b.WriteString("; no host is large enough even when empty")
	}
	return b.String()
}

func fmtAmount(resource string, v int64) string {
	if resource == "cpu" {
		return fmt.Sprintf("%.2f cores", float64(v)/1000)
	}
	return model.ByteSize(v).String()
}

// Place picks the first ready host (in name order) with room for the
// request, or returns a *NoFitError.
func Place(hosts []Host, req Request, now time.Time) (Decision, error) {
	hs := append([]Host(nil), hosts...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
	ready := 0
	for _, h := range hs {
		if !h.Ready {
			continue
		}
		ready++
		if free(h).Fits(req.Resources) {
			return Decision{Host: h.Name}, nil
		}
	}
	if ready == 0 {
		return Decision{}, &NoFitError{Request: req, NoHosts: true}
	}
	return Decision{}, refusal(hs, req, now)
}

func free(h Host) model.Resources {
	f := h.Capacity
	for _, c := range h.Commitments {
		f = f.Sub(c.Resources)
	}
	return f
}

// refusal explains a failed placement.
func refusal(hosts []Host, req Request, now time.Time) *NoFitError {
	e := &NoFitError{Request: req}
	// The most free of each resource over ready hosts.
	type best struct {
		v    int64
		host string
	}
	var cpu, mem, disk best
	first := true
	for _, h := range hosts {
		if !h.Ready {
			continue
		}
		f := free(h)
		if first || f.MilliCPU > cpu.v {
			cpu = best{f.MilliCPU, h.Name}
		}
		if first || int64(f.Memory) > mem.v {
			mem = best{int64(f.Memory), h.Name}
		}
		if first || int64(f.Disk) > disk.v {
			disk = best{int64(f.Disk), h.Name}
		}
		first = false
	}
	r := req.Resources
	if r.MilliCPU > cpu.v {
		e.Shortfalls = append(e.Shortfalls, Shortfall{"cpu", r.MilliCPU, cpu.v, cpu.host})
	}
	if int64(r.Memory) > mem.v {
		e.Shortfalls = append(e.Shortfalls, Shortfall{"memory", int64(r.Memory), mem.v, mem.host})
	}
	if int64(r.Disk) > disk.v {
		e.Shortfalls = append(e.Shortfalls, Shortfall{"disk", int64(r.Disk), disk.v, disk.host})
	}
	if len(e.Shortfalls) == 0 {
		// Each resource is free somewhere, but not all on one host: name the
		// host that comes closest.
		for _, h := range hosts {
			if !h.Ready {
				continue
			}
			f := free(h)
			if r.MilliCPU > f.MilliCPU {
				e.Shortfalls = append(e.Shortfalls, Shortfall{"cpu", r.MilliCPU, f.MilliCPU, h.Name})
			}
			if r.Memory > f.Memory {
				e.Shortfalls = append(e.Shortfalls, Shortfall{"memory", int64(r.Memory), int64(f.Memory), h.Name})
			}
			if r.Disk > f.Disk {
				e.Shortfalls = append(e.Shortfalls, Shortfall{"disk", int64(r.Disk), int64(f.Disk), h.Name})
			}
			break
		}
	}
	// When does room free up? Release each host's commitments in order of
	// their end and find the earliest moment the request fits.
	for _, h := range hosts {
		if !h.Ready || !h.Capacity.Fits(r) {
			continue
		}
		cs := append([]Commitment(nil), h.Commitments...)
		sort.Slice(cs, func(i, j int) bool { return cs[i].Until.Before(cs[j].Until) })
		f := free(h)
		var by []string
		for _, c := range cs {
			if c.Until.IsZero() {
				continue
			}
			f = f.Add(c.Resources)
			by = append(by, c.Workspace)
			if f.Fits(r) {
				t := c.Until
				if t.Before(now) {
					t = now
				}
				if e.FreesAt.IsZero() || t.Before(e.FreesAt) {
					e.FreesAt, e.FreedBy = t, by
				}
				break
			}
		}
	}
	return e
}
