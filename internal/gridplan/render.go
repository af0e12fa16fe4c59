package gridplan

import (
	"fmt"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
)

// Text writes a plan as a person reads it: the window or the shortfall,
// each part's members and hosts with the staging they need, the volumes
// and networks, the effects on other leases, and a chart of the calendar
// with the grid's bars overlaid (width cells; 0: no chart).
func Text(p api.Plan, width int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "plan %s for grid %s (project %s), calendar revision %d, made %s\n", p.ID, p.Grid, p.Project, p.CalendarRevision, ts(p.MadeAt))
	if !p.Fits {
		b.WriteString("does not fit")
		if p.Shortfall != nil {
			fmt.Fprintf(&b, ": %s", p.Shortfall.Message)
			if p.Shortfall.Resource != "" {
				fmt.Fprintf(&b, "\nshort: %s, %s asked, at most %s free on host %s", p.Shortfall.Resource,
					amount(p.Shortfall.Resource, p.Shortfall.Requested), amount(p.Shortfall.Resource, p.Shortfall.Free), p.Shortfall.Host)
			}
		}
		b.WriteString("\n")
		return b.String()
	}
	fmt.Fprintf(&b, "fits: from %s to %s", ts(p.Start), ts(p.End))
	if p.Delay > time.Second {
		fmt.Fprintf(&b, " (%s after the start asked for, %s)", p.Delay.Round(time.Second), ts(p.Requested))
	}
	fmt.Fprintf(&b, "; %d window(s) tried\n", p.Tries)
	if !p.ExpiresAt.IsZero() {
		fmt.Fprintf(&b, "apply it with: vgrid grid apply -f FILE --plan %s (until %s, while the calendar stays at revision %d)\n", p.ID, ts(p.ExpiresAt), p.CalendarRevision)
	}
	for _, n := range p.Networks {
		if n.Exists {
			fmt.Fprintf(&b, "network %s: exists\n", n.Name)
		} else {
			fmt.Fprintf(&b, "network %s: new %s\n", n.Name, orAuto(n.Subnet))
		}
	}
	for _, v := range p.Volumes {
		state := "new"
		if v.Exists {
			state = "exists"
		}
		fmt.Fprintf(&b, "volume %s: %s, %s on %s\n", v.Name, state, v.Size.Human(), v.Node)
	}
	for _, part := range p.Parts {
		fmt.Fprintf(&b, "%s %s: lease %s (%s) %s .. %s\n", part.Kind, part.Name, part.Lease, part.LeaseKind, ts(part.Start), ts(part.End))
		for _, m := range part.Members {
			fmt.Fprintf(&b, "  %-24s on %-10s %s", m.Name, m.Host, m.Image)
			if m.Stage {
				fmt.Fprintf(&b, " (staged from %s)", ts(m.StageAt))
			}
			if len(m.Networks) > 0 {
				fmt.Fprintf(&b, " net %s", strings.Join(m.Networks, ","))
			}
			if len(m.Volumes) > 0 {
				fmt.Fprintf(&b, " vol %s", strings.Join(m.Volumes, ","))
			}
			b.WriteString("\n")
		}
	}
	if len(p.Effects) == 0 {
		b.WriteString("effects on other leases: none\n")
	}
	for _, e := range p.Effects {
		fmt.Fprintf(&b, "effect: %s %s", e.Action, e.Lease)
		if !e.At.IsZero() {
			fmt.Fprintf(&b, " at %s", ts(e.At))
		}
		if e.By > 0 {
			fmt.Fprintf(&b, ", %s later", e.By.Round(time.Second))
		}
		b.WriteString("\n")
	}
	if width > 0 && p.Gantt != nil {
		b.WriteString(Chart(*p.Gantt, width))
	}
	return b.String()
}

// Chart draws a calendar view as text (calendar.RenderGantt), planned
// bars named with "(planned)".
func Chart(v api.Calendar, width int) string {
	rows := make([]calendar.Row, len(v.Rows))
	for i, r := range v.Rows {
		rows[i] = calendar.Row{Host: r.Host, Removed: r.Removed}
		for _, bar := range r.Bars {
			name := bar.Lease
			if bar.Planned {
				name += " (planned)"
			}
			rows[i].Bars = append(rows[i].Bars, calendar.Bar{Lease: name, Project: bar.Project,
				From: bar.From, OverheadFrom: bar.From, RunFrom: bar.RunFrom, RunTo: bar.RunTo, To: bar.To})
		}
	}
	return calendar.RenderGantt(rows, v.From, v.To, width)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orAuto(s string) string {
	if s == "" {
		return "(subnet chosen by vgrid)"
	}
	return s
}

func amount(resource string, v float64) string {
	switch resource {
	case "cpu":
		return fmt.Sprintf("%.2f cores", v/1000)
	case "memory", "disk", "bandwidth":
		return fmt.Sprintf("%.0f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%g", v)
}
