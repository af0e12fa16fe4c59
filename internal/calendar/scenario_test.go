package calendar

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/scenarios/*.txt")

// epoch is time zero of the scenarios.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// TestScenarios runs each testdata/scenarios/*.txt: a script of commands,
// each followed by "----" and its expected output up to a blank line.
// Run with -rewrite to regenerate the expected output.
//
// Commands (times are durations from time zero: 0, 90m, 2h30m):
//
//	policy backfill=none|conservative|aggressive placement=first-fit|pack|spread suspend=true|false migrate=true|false gaps=true|false gapminrun=5m minrun=30m shutdown=30s link=10Mi multicast=true cache=1Gi weights=a:2,b:1 halflife=1h overcommit=cpu:2,memory:1
//	quota project=a cpu=4 mem=8Gi workspaces=2 core-hours=10
//	hosts n=2 cpu=4 mem=8Gi [disk= bw= labels=gpu:true prefix=h suspend-rate=1Gi resume-rate= stage-rate= migrate-rate= boot=2s]
//	host-times name= boot= suspend-rate= resume-rate= at=   (SetHostTimes; an omitted value is zero)
//	submit id= kind= project= at= dur= cpu= mem= [n= disk= bw= start= deadline= preempt= image=name:size labels= submitted=]
//	advance to=
//	finish id= at=
//	cancel id= at=
//	extend id= by= at=        (by < 0 shortens; or to= for the end asked for, "until")
//	remove-host name= at=
//	begin-move id= member= to= at= [cpu= mem=]   (BeginMove; cpu and mem: resized)
//	end-move id= member= ok=true|false at=        (EndMove)
//	move id= member= to= at= [cpu= mem=]         (Move: both at once)
//	resize id= member= cpu= mem= at=              (Resize)
//	resize-target id= member= cpu= mem= at=       (ResizeTarget)
//	gantt from= to= width=
//	leases
//	segments id=              (the lease's chart segments, to the millisecond, and how long it ran)
//	transfers                 (the image transfers on the shared link: policy link=)
//	next
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f, false) })
	}
}

// TestScenariosWithoutShortcuts runs every scenario with the pass's
// shortcuts (memos, reused plans, skipped passes) off: they must not
// change a line of the expected output. After every command it checks the
// calendar's invariants and restores it from its snapshot (restoreCheck).
func TestScenariosWithoutShortcuts(t *testing.T) {
	if *rewrite {
		t.Skip("rewriting: TestScenarios writes the expected output")
	}
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f, true) })
	}
}

type block struct {
	pre  []string // comments and blank lines before the command
	cmd  string
	want []string
}

func parseScript(t *testing.T, path string) []block {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var out []block
	var pre []string
	for i := 0; i < len(lines); i++ {
		ln := lines[i]
		if strings.TrimSpace(ln) == "" || strings.HasPrefix(ln, "#") {
			pre = append(pre, ln)
			continue
		}
		b := block{pre: pre, cmd: ln}
		pre = nil
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: command %q is not followed by ----", path, i+1, ln)
		}
		i += 2
		for ; i < len(lines) && lines[i] != ""; i++ {
			b.want = append(b.want, lines[i])
		}
		out = append(out, b)
	}
	return out
}

func runScenario(t *testing.T, path string, noMemo bool) {
	blocks := parseScript(t, path)
	env := &scenarioEnv{t: t, pol: DefaultPolicy(), noMemo: noMemo}
	var b strings.Builder
	for i, bl := range blocks {
		got := env.do(bl.cmd)
		if noMemo && env.cal != nil {
			// After every command the slot table agrees with the holds
			// and every record restores to the same calendar. (A host
			// described anew with less than its holds is over capacity,
			// as it should be: update-host.txt.)
			err := env.cal.checkInvariants()
			if err != nil && !strings.Contains(err.Error(), "over capacity") {
				t.Fatalf("%s: after %s: %v", filepath.Base(path), bl.cmd, err)
			}
			if err == nil {
				restoreCheck(t, env.cal, 0, i)
			}
		}
		if !*rewrite && strings.Join(got, "\n") != strings.Join(bl.want, "\n") {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", filepath.Base(path), bl.cmd, strings.Join(got, "\n"), strings.Join(bl.want, "\n"))
		}
		for _, p := range bl.pre {
			b.WriteString(p + "\n")
		}
		b.WriteString(bl.cmd + "\n----\n")
		for _, g := range got {
			b.WriteString(g + "\n")
		}
		b.WriteString("\n")
	}
	if *rewrite && !noMemo {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type scenarioEnv struct {
	t      *testing.T
	noMemo bool // the pass's shortcuts off
	pol    Policy
	hosts  []Host
	nhosts map[string]int
	cal    *Calendar
}

func (e *scenarioEnv) calendar() *Calendar {
	if e.cal == nil {
		c, err := New(e.hosts, e.pol)
		if err != nil {
			e.t.Fatalf("new calendar: %v", err)
		}
		c.noMemo = e.noMemo
		e.cal = c
	}
	return e.cal
}

func parseArgs(t *testing.T, s string) (string, map[string]string) {
	fs := strings.Fields(s)
	args := map[string]string{}
	for _, f := range fs[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("%q: argument %q is not key=value", s, f)
		}
		args[k] = v
	}
	return fs[0], args
}

func (e *scenarioEnv) dur(s string) time.Duration {
	if s == "0" || s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		e.t.Fatalf("bad duration %q: %v", s, err)
	}
	return d
}

func (e *scenarioEnv) at(s string) time.Time { return epoch.Add(e.dur(s)) }

func (e *scenarioEnv) size(s string) model.ByteSize {
	if s == "" {
		return 0
	}
	v, err := model.ParseByteSize(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *scenarioEnv) num(s string, def int) int {
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *scenarioEnv) cores(s string) int64 {
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		e.t.Fatal(err)
	}
	return int64(f*1000 + 0.5)
}

func labels(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, ":")
		m[k] = v
	}
	return m
}

// rel prints a time as hh:mm:ss from time zero.
func rel(t time.Time) string {
	d := t.Sub(epoch)
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	s := int64(d / time.Second)
	return fmt.Sprintf("%s%02d:%02d:%02d", neg, s/3600, s/60%60, s%60)
}

// relMs is rel with the milliseconds when there are any.
func relMs(t time.Time) string {
	if ms := t.Sub(epoch) % time.Second / time.Millisecond; ms != 0 {
		return fmt.Sprintf("%s.%03d", rel(t), max(ms, -ms))
	}
	return rel(t)
}

func fmtActions(as []Action) []string {
	var out []string
	for _, a := range as {
		s := fmt.Sprintf("%s %s %s", rel(a.At), a.Kind, a.Lease)
		if a.Kind == ActMigrate {
			s += fmt.Sprintf(" member %d %s -> %s in %v", a.Member, a.From, a.To, a.Duration)
		} else if len(a.Hosts) > 0 {
			s += " on " + strings.Join(a.Hosts, ",")
		}
		if a.Reason != "" {
			s += " (" + a.Reason + ")"
		}
		out = append(out, s)
	}
	return out
}

func (e *scenarioEnv) do(line string) []string {
	t := e.t
	cmd, a := parseArgs(t, line)
	switch cmd {
	case "policy":
		if e.cal != nil {
			t.Fatal("policy after the calendar was created")
		}
		if v, ok := a["backfill"]; ok {
			e.pol.Backfill = Backfill(v)
		}
		if v, ok := a["placement"]; ok {
			e.pol.Placement = Placement(v)
		}
		if v, ok := a["suspend"]; ok {
			e.pol.Suspend = v == "true" || v == "serial-only"
			e.pol.SerialOnly = v == "serial-only"
		}
		if v, ok := a["exclusion"]; ok {
			e.pol.Exclusion = Exclusion(v)
		}
		if v, ok := a["migrate"]; ok {
			e.pol.Migrate = v == "true"
		}
		if v, ok := a["gaps"]; ok {
			e.pol.Gaps = v == "true"
		}
		if v, ok := a["gapminrun"]; ok {
			e.pol.GapMinRun = e.dur(v)
		}
		if v, ok := a["minrun"]; ok {
			e.pol.MinRun = e.dur(v)
		}
		if v, ok := a["shutdown"]; ok {
			e.pol.ShutdownTime = e.dur(v)
		}
		if v, ok := a["link"]; ok {
			if v == "measured" {
				e.pol.Link.Measured = true
			} else {
				e.pol.Link.Bandwidth = int64(e.size(v))
			}
		}
		if v, ok := a["multicast"]; ok {
			e.pol.Link.Multicast = v == "true"
		}
		if v, ok := a["cache"]; ok {
			e.pol.Link.Cache = int64(e.size(v))
		}
		if v, ok := a["weights"]; ok {
			if e.pol.FairShare == nil {
				e.pol.FairShare = &FairShare{}
			}
			e.pol.FairShare.Weights = map[string]float64{}
			for _, kv := range strings.Split(v, ",") {
				k, w, _ := strings.Cut(kv, ":")
				f, _ := strconv.ParseFloat(w, 64)
				e.pol.FairShare.Weights[k] = f
			}
		}
		if v, ok := a["overcommit"]; ok {
			for _, kv := range strings.Split(v, ",") {
				k, r, _ := strings.Cut(kv, ":")
				f, err := strconv.ParseFloat(r, 64)
				if err != nil {
					t.Fatalf("overcommit %q: %v", kv, err)
				}
				switch k {
				case "cpu":
					e.pol.Overcommit.CPU = f
				case "memory":
					e.pol.Overcommit.Memory = f
				case "disk":
					e.pol.Overcommit.Disk = f
				case "bandwidth":
					e.pol.Overcommit.Bandwidth = f
				default:
					t.Fatalf("overcommit: unknown resource %q", k)
				}
			}
		}
		if v, ok := a["halflife"]; ok {
			if e.pol.FairShare == nil {
				e.pol.FairShare = &FairShare{}
			}
			e.pol.FairShare.HalfLife = e.dur(v)
		}
		return nil
	case "quota":
		if e.pol.Quotas == nil {
			e.pol.Quotas = map[string]Quota{}
		}
		ch, _ := strconv.ParseFloat(a["core-hours"], 64)
		e.pol.Quotas[a["project"]] = Quota{MilliCPU: e.cores(a["cpu"]), Memory: e.size(a["mem"]),
			Workspaces: e.num(a["workspaces"], 0), CoreHours: ch}
		return nil
	case "hosts":
		if e.nhosts == nil {
			e.nhosts = map[string]int{}
		}
		prefix := a["prefix"]
		if prefix == "" {
			prefix = "h"
		}
		var out []string
		for i := 0; i < e.num(a["n"], 1); i++ {
			e.nhosts[prefix]++
			h := Host{
				Name: fmt.Sprintf("%s%d", prefix, e.nhosts[prefix]),
				Capacity: model.Resources{MilliCPU: e.cores(a["cpu"]), Memory: e.size(a["mem"]),
					Disk: e.size(a["disk"]), Bandwidth: e.size(a["bw"])},
				Labels:      labels(a["labels"]),
				SuspendRate: int64(e.size(a["suspend-rate"])),
				ResumeRate:  int64(e.size(a["resume-rate"])),
				StageRate:   int64(e.size(a["stage-rate"])),
				MigrateRate: int64(e.size(a["migrate-rate"])),
				BootTime:    e.dur(a["boot"]),
				Cordoned:    a["cordoned"] == "true",
			}
			if v := a["images"]; v != "" {
				h.Images = strings.Split(v, ",")
			}
			if e.cal != nil {
				if err := e.cal.AddHost(h, e.at(a["at"])); err != nil {
					out = append(out, "error: "+err.Error())
				}
			} else {
				e.hosts = append(e.hosts, h)
			}
		}
		return out
	case "evict":
		as, err := e.calendar().Evict(a["id"], "host draining", e.at(a["at"]))
		out := fmtActions(as)
		if err != nil {
			out = append(out, "error: "+err.Error())
		}
		return out
	case "update-host":
		as, err := e.calendar().UpdateHost(Host{Name: a["name"],
			Capacity: model.Resources{MilliCPU: e.cores(a["cpu"]), Memory: e.size(a["mem"])},
			Labels:   labels(a["labels"]), StageRate: int64(e.size(a["stage-rate"]))}, e.at(a["at"]))
		out := fmtActions(as)
		if err != nil {
			out = append(out, "error: "+err.Error())
		}
		return out
	case "cordon":
		as, err := e.calendar().SetCordon(a["name"], a["on"] != "false", e.at(a["at"]))
		out := fmtActions(as)
		if err != nil {
			out = append(out, "error: "+err.Error())
		}
		return out
	case "host-times":
		err := e.calendar().SetHostTimes(a["name"], e.dur(a["boot"]), int64(e.size(a["suspend-rate"])),
			int64(e.size(a["resume-rate"])), e.at(a["at"]))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return nil
	case "submit":
		c := e.calendar()
		n := e.num(a["n"], 1)
		l := Lease{ID: a["id"], Project: a["project"], Kind: Kind(a["kind"]), Duration: e.dur(a["dur"]),
			Preempt: Preempt(a["preempt"])}
		for i := 0; i < n; i++ {
			l.Members = append(l.Members, Request{
				Resources: model.Resources{MilliCPU: e.cores(a["cpu"]), Memory: e.size(a["mem"]),
					Disk: e.size(a["disk"]), Bandwidth: e.size(a["bw"])},
				Labels: labels(a["labels"]),
				Spread: a["spread"] == "true",
			})
		}
		if v, ok := a["start"]; ok {
			l.Start = e.at(v)
		}
		if v, ok := a["deadline"]; ok {
			l.Deadline = e.at(v)
		}
		if v, ok := a["submitted"]; ok {
			l.Submitted = e.at(v)
		}
		if v, ok := a["image"]; ok {
			name, sz, _ := strings.Cut(v, ":")
			l.Image = Image{Name: name, Size: e.size(sz)}
		}
		adm, err := c.Submit(l, e.at(a["at"]))
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) {
				return []string{"error: " + err.Error()}
			}
			return []string{r.Error()}
		}
		if adm.State == StateQueued {
			return []string{fmt.Sprintf("admitted %s: queued", adm.Lease)}
		}
		out := []string{fmt.Sprintf("admitted %s: %s %s-%s on %s", adm.Lease, adm.State, rel(adm.Start), rel(adm.End), strings.Join(adm.Hosts, ","))}
		for _, v := range adm.Victims {
			out = append(out, fmt.Sprintf("  %s %s at %s", v.Kind, v.Lease, rel(v.At)))
		}
		for _, m := range adm.Moved {
			out = append(out, fmt.Sprintf("  move %s to %s-%s on %s (was %s-%s)", m.Lease, rel(m.Start), rel(m.End),
				strings.Join(m.Hosts, ","), rel(m.FromStart), rel(m.FromEnd)))
		}
		for _, m := range adm.Resumes {
			was := "runs %s-%s before"
			if m.Rebooked {
				was = "was booked %s-%s"
			}
			out = append(out, fmt.Sprintf("  resume %s booked %s-%s on %s ("+was+")", m.Lease, rel(m.Start), rel(m.End),
				strings.Join(m.Hosts, ","), rel(m.FromStart), rel(m.FromEnd)))
		}
		return out
	case "advance":
		return fmtActions(e.calendar().Advance(e.at(a["to"])))
	case "finish", "cancel", "remove-host":
		c := e.calendar()
		var as []Action
		var err error
		switch cmd {
		case "finish":
			as, err = c.Finish(a["id"], e.at(a["at"]))
		case "cancel":
			as, err = c.Cancel(a["id"], e.at(a["at"]))
		default:
			as, err = c.RemoveHost(a["name"], e.at(a["at"]))
		}
		out := fmtActions(as)
		if err != nil {
			out = append(out, "error: "+err.Error())
		}
		return out
	case "extend":
		c := e.calendar()
		var as []Action
		var err error
		if v, ok := a["to"]; ok {
			as, err = c.ExtendTo(a["id"], e.at(v), e.at(a["at"]))
		} else {
			as, err = c.Extend(a["id"], e.dur(a["by"]), e.at(a["at"]))
		}
		var out []string
		var r *Refusal
		switch {
		case errors.As(err, &r):
			out = append(out, "refused: "+r.Error())
		case err != nil:
			out = append(out, "error: "+err.Error())
		default:
			v, _ := c.Get(a["id"])
			s := fmt.Sprintf("granted: %s %s", v.ID, v.State)
			if !v.Start.IsZero() {
				word := ""
				if v.Planned {
					word = " planned"
				}
				s += fmt.Sprintf("%s %s-%s on %s", word, rel(v.Start), rel(v.End), strings.Join(v.Hosts, ","))
			}
			s += shutdownNote(v)
			out = append(out, s+fmt.Sprintf(" remaining %v", v.Remaining))
		}
		return append(out, fmtActions(as)...)
	case "begin-move", "end-move", "move", "resize", "resize-target":
		return e.moveOrResize(cmd, a)
	case "gantt":
		g := e.calendar().Gantt(e.at(a["from"]), e.at(a["to"]), e.num(a["width"], 48))
		return strings.Split(strings.TrimRight(g, "\n"), "\n")
	case "transfers":
		var out []string
		for _, x := range e.calendar().Transfers(time.Time{}) {
			out = append(out, fmt.Sprintf("%s to %s %s-%s used by %d", x.Image, strings.Join(x.Hosts, ","), rel(x.From), rel(x.To), x.Users))
		}
		if len(out) == 0 {
			out = []string{"none"}
		}
		return out
	case "segments":
		// The lease's chart segments (its record's), times to the
		// millisecond, and how long its guest ran in them.
		r, ok := e.calendar().Record(a["id"])
		if !ok {
			return []string{"error: no lease " + a["id"]}
		}
		var out []string
		var ran time.Duration
		for _, sg := range r.Segments {
			out = append(out, fmt.Sprintf("%s [%s, %s) overhead from %s run [%s, %s) continued %v", sg.Host, relMs(sg.From), relMs(sg.To),
				relMs(sg.OverheadFrom), relMs(sg.RunFrom), relMs(sg.RunTo), sg.Continued))
			ran += max(sg.RunTo.Sub(sg.RunFrom), 0)
		}
		return append(out, fmt.Sprintf("ran %v of %v", ran, r.Duration.D()))
	case "leases":
		var out []string
		for _, v := range e.calendar().Leases() {
			s := fmt.Sprintf("%s %s project=%s %s", v.ID, v.Kind, v.Project, v.State)
			if !v.Start.IsZero() {
				word := ""
				if v.Planned {
					word = " planned"
				}
				s += fmt.Sprintf("%s %s-%s on %s", word, rel(v.Start), rel(v.End), strings.Join(v.Hosts, ","))
			}
			s += shutdownNote(v)
			if v.State != StateDone && v.State != StateRefused && v.State != StateCancelled {
				s += fmt.Sprintf(" remaining %v", v.Remaining)
			}
			if v.Suspensions > 0 || v.Requeues > 0 {
				s += fmt.Sprintf(" suspended %dx requeued %dx", v.Suspensions, v.Requeues)
			}
			if v.Reason != "" && v.State != StateRefused {
				s += " (" + v.Reason + ")"
			}
			for m := range len(v.Members) {
				if to, ok := v.Moving[m]; ok {
					s += fmt.Sprintf(" member %d moving to %s", m, to)
				}
			}
			out = append(out, s)
		}
		return out
	case "next":
		if tn, ok := e.calendar().NextEvent(); ok {
			return []string{rel(tn)}
		}
		return []string{"none"}
	}
	t.Fatalf("unknown command %q", cmd)
	return nil
}

// shutdownNote is what a lease view says of its guests' shutdown
// (Policy.ShutdownTime): the end of its hold after its run.
func shutdownNote(v LeaseView) string {
	switch {
	case v.ShutdownTo.IsZero():
		return ""
	case v.ShuttingDown:
		return " shutting down to " + rel(v.ShutdownTo)
	}
	return " shutdown to " + rel(v.ShutdownTo)
}

// moveOrResize runs the move and resize commands.
func (e *scenarioEnv) moveOrResize(cmd string, a map[string]string) []string {
	c := e.calendar()
	id, member, at := a["id"], e.num(a["member"], 0), e.at(a["at"])
	var res *model.Resources
	if _, ok := a["cpu"]; ok {
		res = &model.Resources{MilliCPU: e.cores(a["cpu"]), Memory: e.size(a["mem"])}
	}
	var as []Action
	var err error
	switch cmd {
	case "begin-move":
		as, err = c.BeginMove(id, member, a["to"], res, at)
	case "end-move":
		as, err = c.EndMove(id, member, a["ok"] != "false", at)
	case "move":
		as, err = c.Move(id, member, a["to"], res, at)
	case "resize":
		if res == nil {
			e.t.Fatal("resize without cpu=")
		}
		as, err = c.Resize(id, member, *res, at)
	case "resize-target":
		if res == nil {
			e.t.Fatal("resize-target without cpu=")
		}
		var h string
		if h, err = c.ResizeTarget(id, member, *res, at); err == nil {
			return []string{"target: " + h}
		}
	}
	var out []string
	var r *Refusal
	switch {
	case errors.As(err, &r):
		out = append(out, "refused: "+r.Error())
	case err != nil:
		out = append(out, "error: "+err.Error())
	default:
		out = append(out, "ok")
	}
	return append(out, fmtActions(as)...)
}
