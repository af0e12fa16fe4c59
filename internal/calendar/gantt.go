package calendar

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
)

const ganttLetters = "abcdefghijklmnopqrstuvwxyz"

// Gantt draws the slots held over [from, to) as text: one row per host
// (more when leases share it), width cells wide, each lease as a letter,
// lower case while it runs or holds its slots and upper case while it
// stages, resumes or suspends; '.' is idle. A legend follows.
func (c *Calendar) Gantt(from, to time.Time, width int) string {
	f, t := tick(from), tick(to)
	if width <= 0 || t <= f {
		return ""
	}
	cell := float64(t-f) / float64(width)
	type hseg struct {
		seg
		l *lease
	}
	byHost := map[*host][]hseg{}
	inWindow := map[*lease]bool{}
	for _, l := range c.leases {
		for _, s := range l.segs {
			if s.from < t && s.to > f && s.to > s.from {
				byHost[s.h] = append(byHost[s.h], hseg{s, l})
				inWindow[l] = true
			}
		}
	}
	ls := make([]*lease, 0, len(inWindow))
	for l := range inWindow {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].ID < ls[j].ID })
	letter := map[*lease]rune{}
	for i, l := range ls {
		r := '#'
		if i < len(ganttLetters) {
			r = rune(ganttLetters[i])
		} else if i < len(ganttLetters)+10 {
			r = rune('0' + i - len(ganttLetters))
		}
		letter[l] = r
	}
	hosts := append([]*host(nil), c.hosts...)
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	wname := 0
	for _, h := range hosts {
		wname = max(wname, len(h.Name))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s .. %s, %v per cell\n", strings.Repeat(" ", wname), fmtT(from), fmtT(to), time.Duration(cell).Round(time.Second))
	for _, h := range hosts {
		segs := byHost[h]
		if h.down && len(segs) == 0 {
			continue
		}
		sort.Slice(segs, func(i, j int) bool {
			if segs[i].from != segs[j].from {
				return segs[i].from < segs[j].from
			}
			return segs[i].l.ID < segs[j].l.ID
		})
		// Interval partitioning: each hold keeps one lane.
		var lanes [][]hseg
		var ends []int64
		for _, s := range segs {
			placed := false
			for i := range lanes {
				if ends[i] <= s.from {
					lanes[i] = append(lanes[i], s)
					ends[i] = s.to
					placed = true
					break
				}
			}
			if !placed {
				lanes = append(lanes, []hseg{s})
				ends = append(ends, s.to)
			}
		}
		if len(lanes) == 0 {
			lanes = append(lanes, nil)
		}
		for li, lane := range lanes {
			name := h.Name
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
					o0, o1 := max(s.from, c0), min(s.to, c1)
					if o1-o0 > best {
						best = o1 - o0
						ch = letter[s.l]
						mid := o0 + (o1-o0)/2
						if mid >= s.ovFrom && mid < s.runFrom || mid >= s.runTo && mid < s.to {
							ch = unicode.ToUpper(ch)
						}
					}
				}
				b.WriteRune(ch)
			}
			b.WriteString("|")
			if li == 0 && h.down {
				b.WriteString(" (removed)")
			}
			b.WriteString("\n")
		}
	}
	if len(ls) > 0 {
		b.WriteString("legend:")
		for _, l := range ls {
			fmt.Fprintf(&b, " %c=%s", letter[l], l.ID)
		}
		b.WriteString("; upper case: staging, resuming or suspending\n")
	}
	return b.String()
}
