package calendar

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"vgrid/internal/model"
)

const ganttLetters = "abcdefghijklmnopqrstuvwxyz"

// Bar is one hold of a lease on a host, for charts: [From, To) held,
// [OverheadFrom, RunFrom) staging and booting, or resuming, [RunFrom,
// RunTo) running, [RunTo, To) suspending or shutting down.
type Bar struct {
	Lease, Project                         string
	From, OverheadFrom, RunFrom, RunTo, To time.Time
}

// Row is one host of a chart with its bars, by start, and the network
// volumes on its disk, by name, with the host's disk capacity (Disk, as
// the host has it, without overcommit).
type Row struct {
	Host    string
	Removed bool
	Bars    []Bar
	Volumes []Volume
	Disk    model.ByteSize
}

// GanttData returns the holds that overlap [from, to), one row per host
// (removed hosts only if they have bars or volumes), hosts and bars in
// order, with each host's volumes.
func (c *Calendar) GanttData(from, to time.Time) []Row {
	f, t := tick(from), tick(to)
	byHost := map[*host][]Bar{}
	for _, l := range c.leases {
		for _, s := range l.segs {
			if s.from < t && s.to > f && s.to > s.from {
				byHost[s.h] = append(byHost[s.h], Bar{Lease: l.ID, Project: l.Project,
					From: tm(s.from), OverheadFrom: tm(s.ovFrom), RunFrom: tm(s.runFrom), RunTo: tm(s.runTo), To: tm(s.to)})
			}
		}
	}
	hosts := append([]*host(nil), c.hosts...)
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	var rows []Row
	for _, h := range hosts {
		bars := byHost[h]
		if h.down && len(bars) == 0 && len(h.volumes) == 0 {
			continue
		}
		sort.Slice(bars, func(i, j int) bool {
			a, b := &bars[i], &bars[j]
			if !a.From.Equal(b.From) {
				return a.From.Before(b.From)
			}
			if a.Lease != b.Lease {
				return a.Lease < b.Lease
			}
			// A lease's member moving off a host shares it with the
			// others for a while: order its bars fully.
			for _, p := range [][2]time.Time{{a.To, b.To}, {a.RunFrom, b.RunFrom}, {a.RunTo, b.RunTo}, {a.OverheadFrom, b.OverheadFrom}} {
				if !p[0].Equal(p[1]) {
					return p[0].Before(p[1])
				}
			}
			return false
		})
		var vols []Volume
		if len(h.volumes) > 0 {
			vols = slices.Clone(h.volumes)
			sort.Slice(vols, func(i, j int) bool { return vols[i].Name < vols[j].Name })
		}
		rows = append(rows, Row{Host: h.Name, Removed: h.down, Bars: bars, Volumes: vols, Disk: h.Capacity.Disk})
	}
	return rows
}

// Gantt draws the slots held over [from, to) as text (see RenderGantt).
func (c *Calendar) Gantt(from, to time.Time, width int) string {
	return RenderGantt(c.GanttData(from, to), from, to, width)
}

// RenderGantt draws rows over [from, to) as text: one line per host (more
// when holds overlap), width cells wide, each lease as a letter, lower
// case while it runs or holds its slots and upper case while it stages,
// boots, resumes, suspends or shuts down; '.' is idle; a bar whose Lease is "*"
// (hidden) is drawn as '*'. A host with network volumes has a line under
// its row naming them with their sizes, and the disk they take of the
// host's ("volumes: p/data 64Mi, p/logs 1Gi (1.1Gi of 20Gi disk)"). A
// legend follows.
func RenderGantt(rows []Row, from, to time.Time, width int) string {
	f, t := tick(from), tick(to)
	if width <= 0 || t <= f {
		return ""
	}
	cell := float64(t-f) / float64(width)
	seen := map[string]bool{}
	var ids []string
	hidden := false
	for _, r := range rows {
		for _, b := range r.Bars {
			if b.Lease == "*" {
				hidden = true
				continue
			}
			if !seen[b.Lease] {
				seen[b.Lease] = true
				ids = append(ids, b.Lease)
			}
		}
	}
	sort.Strings(ids)
	letter := map[string]rune{"*": '*'}
	for i, id := range ids {
		r := '#'
		if i < len(ganttLetters) {
			r = rune(ganttLetters[i])
		} else if i < len(ganttLetters)+10 {
			r = rune('0' + i - len(ganttLetters))
		}
		letter[id] = r
	}
	wname := 0
	for _, r := range rows {
		wname = max(wname, len(r.Host))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s .. %s, %v per cell\n", strings.Repeat(" ", wname), fmtT(from), fmtT(to), time.Duration(cell).Round(time.Second))
	for _, r := range rows {
		// Interval partitioning: each hold keeps one lane.
		var lanes [][]Bar
		var ends []time.Time
		for _, s := range r.Bars {
			placed := false
			for i := range lanes {
				if !ends[i].After(s.From) {
					lanes[i] = append(lanes[i], s)
					ends[i] = s.To
					placed = true
					break
				}
			}
			if !placed {
				lanes = append(lanes, []Bar{s})
				ends = append(ends, s.To)
			}
		}
		if len(lanes) == 0 {
			lanes = append(lanes, nil)
		}
		for li, lane := range lanes {
			name := r.Host
			if li > 0 {
				name = ""
			}
			fmt.Fprintf(&b, "%-*s |", wname, name)
			for k := 0; k < width; k++ {
				c0 := f + int64(float64(k)*cell)
				c1 := f + int64(float64(k+1)*cell)
				ch := '.'
				var best int64
				for _, s := range lane {
					o0, o1 := max(tick(s.From), c0), min(tick(s.To), c1)
					if o1-o0 > best {
						best = o1 - o0
						ch = letter[s.Lease]
						mid := o0 + (o1-o0)/2
						if mid >= tick(s.OverheadFrom) && mid < tick(s.RunFrom) || mid >= tick(s.RunTo) && mid < tick(s.To) {
							ch = unicode.ToUpper(ch)
						}
					}
				}
				b.WriteRune(ch)
			}
			b.WriteString("|")
			if li == 0 && r.Removed {
				b.WriteString(" (removed)")
			}
			b.WriteString("\n")
		}
		if len(r.Volumes) > 0 {
			fmt.Fprintf(&b, "%-*s  %s\n", wname, "", volumeLine(r))
		}
	}
	if len(ids) > 0 || hidden {
		b.WriteString("legend:")
		for _, id := range ids {
			fmt.Fprintf(&b, " %c=%s", letter[id], id)
		}
		if hidden {
			b.WriteString("; *: other projects")
		}
		b.WriteString("; upper case: staging, booting, resuming, suspending or shutting down\n")
	}
	return b.String()
}

// volumeLine describes a row's volumes: each with its size, then the
// disk they take of the host's.
func volumeLine(r Row) string {
	var b strings.Builder
	b.WriteString("volumes:")
	var sum model.ByteSize
	for i, v := range r.Volumes {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s %s", v.Name, v.Size)
		sum += v.Size
	}
	fmt.Fprintf(&b, " (%s of %s disk)", sum.Human(), r.Disk.Human())
	return b.String()
}

// Mask hides the bars of projects other than project: their lease becomes
// "*" (and their project ""), so that a chart shows when capacity is taken
// but not by whom; their volumes likewise become "*" with their size.
func Mask(rows []Row, project string) []Row {
	out := make([]Row, len(rows))
	for i, r := range rows {
		out[i] = Row{Host: r.Host, Removed: r.Removed, Bars: make([]Bar, len(r.Bars)), Disk: r.Disk}
		for _, v := range r.Volumes {
			if v.Project != project {
				v.Name, v.Project = "*", ""
			}
			out[i].Volumes = append(out[i].Volumes, v)
		}
		for k, b := range r.Bars {
			if b.Project != project {
				b.Lease, b.Project = "*", ""
			}
			out[i].Bars[k] = b
		}
	}
	return out
}
