package plot

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"vgrid/internal/model"

	"vgrid/internal/sim/metrics"
)

// GanttOptions adjusts GanttSVG.
type GanttOptions struct {
	Title string
	// Hosts fixes the first rows and their order (hosts with nothing on
	// them still get a row); hosts that only appear in the records follow
	// in natural order ("h2" before "h10"). Nil: all hosts in natural order.
	Hosts []string
	// Width is the image width in pixels; 0 means 1,200.
	Width int
	// From and To, when To > From, show only that window of time: bars are
	// clipped to it and those outside it left out.
	From, To time.Duration
	// NoTooltips leaves out the <title> tooltips (lease id, kind, host and
	// times) that bars get when there are at most 5,000 of them.
	NoTooltips bool
}

// Kind colours, shared by bars and legend.
var kindColors = []struct {
	kind         model.LeaseKind
	label, color string
}{
	{model.LeaseBestEffort, "best-effort", "#4e79a7"},
	{model.LeaseReservation, "reservation", "#f28e2b"},
	{model.LeaseDeadline, "deadline", "#59a14f"},
	{model.LeaseImmediate, "immediate", "#b07aa1"},
	{"", "other", "#9c9c9c"},
}

func kindIndex(kind model.LeaseKind) int {
	for i, k := range kindColors[:len(kindColors)-1] {
		if k.kind == kind {
			return i
		}
	}
	return len(kindColors) - 1
}

const maxTooltips = 5000

type bar struct {
	seg  metrics.Segment
	rec  int // index into records
	kind int // index into kindColors
	lane int
}

// GanttSVG writes a Gantt chart of records: one row per host, one bar per
// run segment (metrics.Record.Runs: the record's Segments, or each VM from
// Start to End on Hosts[i]). Overlapping bars on one host are stacked in
// lanes within its row. Segments without a host are left out; it is an
// error when no segment has one.
func GanttSVG(w io.Writer, records []metrics.Record, opt GanttOptions) error {
	width := float64(opt.Width)
	if width <= 0 {
		width = 1200
	}
	byHost := map[string][]bar{}
	var (
		lo, hi  time.Duration
		anyBar  bool
		present = make([]bool, len(kindColors))
	)
	for i, r := range records {
		k := kindIndex(r.Kind)
		for _, sg := range r.Runs() {
			if sg.Host == "" {
				continue
			}
			if opt.To > opt.From {
				sg.Start, sg.End = max(sg.Start, opt.From), min(sg.End, opt.To)
				if sg.End <= sg.Start {
					continue
				}
			}
			if !anyBar || sg.Start < lo {
				lo = sg.Start
			}
			if !anyBar || sg.End > hi {
				hi = sg.End
			}
			anyBar = true
			present[k] = true
			byHost[sg.Host] = append(byHost[sg.Host], bar{seg: sg, rec: i, kind: k})
		}
	}
	if !anyBar {
		return errors.New("gantt svg: no run segment has a host (in the window)")
	}
	if opt.To > opt.From {
		lo, hi = opt.From, opt.To
	}

	hosts := slices.Clone(opt.Hosts)
	listed := map[string]bool{}
	for _, h := range hosts {
		listed[h] = true
	}
	var rest []string
	for h := range byHost {
		if !listed[h] {
			rest = append(rest, h)
		}
	}
	slices.SortFunc(rest, naturalCmp)
	hosts = append(hosts, rest...)

	// Lanes: greedy interval partitioning per host.
	lanes := make([]int, len(hosts))
	nbars := 0
	for i, h := range hosts {
		bs := byHost[h]
		slices.SortFunc(bs, func(a, b bar) int {
			return cmp.Or(cmp.Compare(a.seg.Start, b.seg.Start), cmp.Compare(a.seg.End, b.seg.End))
		})
		var ends []time.Duration
		for j := range bs {
			lane := -1
			for l, e := range ends {
				if e <= bs[j].seg.Start {
					lane = l
					break
				}
			}
			if lane < 0 {
				lane = len(ends)
				ends = append(ends, 0)
			}
			ends[lane] = bs[j].seg.End
			bs[j].lane = lane
		}
		lanes[i] = max(len(ends), 1)
		nbars += len(bs)
	}

	// Geometry: rows shrink with the number of hosts; labels thin out.
	rowH := math.Max(3, math.Min(24, 800/float64(len(hosts))))
	labelEvery := int(math.Ceil(11 / rowH))
	longest := 0
	for _, h := range hosts {
		longest = max(longest, len(h))
	}
	left := math.Min(160, math.Max(50, 7*float64(longest)+16))
	const right, top, bottom = 20.0, 64.0, 56.0
	plotH := rowH * float64(len(hosts))
	height := top + plotH + bottom
	x0, x1 := left, width-right
	if x1-x0 < 100 {
		x1 = x0 + 100
		width = x1 + right
	}
	ax := newTimeAxis(lo, hi, x0, x1)

	s := newSVG(w, width, height)
	s.text(x0, 24, `font-size="16" font-weight="bold" fill="#222"`, opt.Title)
	// Legend: the kinds present, top right.
	var items []int
	for k, ok := range present {
		if ok {
			items = append(items, k)
		}
	}
	lx := x1
	for i := len(items) - 1; i >= 0; i-- {
		kc := kindColors[items[i]]
		lx -= 7*float64(len(kc.label)) + 30
		s.printf(`<rect x="%s" y="36" width="12" height="12" fill="%s"/>`+"\n", num(lx), kc.color)
		s.text(lx+17, 46, `fill="#333"`, kc.label)
	}
	s.text(x0, 46, `fill="#666" font-size="11"`, fmt.Sprintf("%d hosts, %d leases, %d bars", len(hosts), countLeases(byHost), nbars))

	// Row stripes and host labels.
	fontSize := math.Min(11, math.Max(8, rowH*0.8))
	for i, h := range hosts {
		y := top + rowH*float64(i)
		if i%2 == 1 {
			s.printf(`<rect x="%s" y="%s" width="%s" height="%s" fill="#f4f4f4"/>`+"\n", num(x0), num(y), num(x1-x0), num(rowH))
		}
		if i%labelEvery == 0 {
			s.printf(`<text x="%s" y="%s" text-anchor="end" font-size="%s" fill="#333">%s</text>`+"\n",
				num(x0-6), num(y+rowH/2+fontSize*0.35), num(fontSize), esc(h))
		}
	}
	ax.draw(s, top, top+plotH)

	// Bars, grouped by colour; bars wider than 3 px get a thin white
	// outline so that back-to-back leases on a host stay apart.
	tips := !opt.NoTooltips && nbars <= maxTooltips
	gap := math.Min(5, rowH*0.2) // between rows
	for k, kc := range kindColors {
		if !present[k] {
			continue
		}
		for _, wide := range []bool{false, true} {
			if wide {
				s.printf(`<g fill="%s" stroke="white" stroke-width="0.5">`+"\n", kc.color)
			} else {
				s.printf(`<g fill="%s">`+"\n", kc.color)
			}
			for i, h := range hosts {
				laneH := (rowH - gap) / float64(lanes[i])
				for _, b := range byHost[h] {
					xa, xb := ax.x(b.seg.Start), ax.x(b.seg.End)
					if b.kind != k || (xb-xa > 3) != wide {
						continue
					}
					y := top + rowH*float64(i) + gap/2 + laneH*float64(b.lane)
					bw := math.Max(xb-xa, 0.6)
					bh := math.Max(laneH-math.Min(0.5, laneH*0.1), 0.3)
					if tips {
						r := records[b.rec]
						s.printf(`<rect x="%s" y="%s" width="%s" height="%s"><title>%s</title></rect>`+"\n",
							num(xa), num(y), num(bw), num(bh), esc(tooltip(r, b.seg)))
					} else {
						s.printf(`<rect x="%s" y="%s" width="%s" height="%s"/>`+"\n", num(xa), num(y), num(bw), num(bh))
					}
				}
			}
			s.printf("</g>\n")
		}
	}
	s.printf(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#444"/>`+"\n", num(x0), num(top), num(x1-x0), num(plotH))
	return s.close()
}

func countLeases(byHost map[string][]bar) int {
	seen := map[int]bool{}
	for _, bs := range byHost {
		for _, b := range bs {
			seen[b.rec] = true
		}
	}
	return len(seen)
}

func tooltip(r metrics.Record, sg metrics.Segment) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s", r.ID, r.Kind)
	if r.Project != "" {
		fmt.Fprintf(&b, ", %s", r.Project)
	}
	fmt.Fprintf(&b, ") on %s: %v to %v, %d nodes", sg.Host, sg.Start, sg.End, r.Nodes)
	if r.Preemptions > 0 {
		fmt.Fprintf(&b, ", %d preemptions", r.Preemptions)
	}
	return b.String()
}

// naturalCmp orders strings with embedded numbers by value: "h2" < "h10".
func naturalCmp(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			na, ra := splitDigits(a)
			nb, rb := splitDigits(b)
			ta, tb := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if c := cmp.Or(cmp.Compare(len(ta), len(tb)), strings.Compare(ta, tb), cmp.Compare(len(na), len(nb))); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func splitDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}
