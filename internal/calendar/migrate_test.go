package calendar

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

// moveCal is a calendar of three 4-core hosts (h3 cordoned) with be1
// (2 cores, 2Gi, 3h) running on h1, a 2-member lease cl on h1 and h2, and
// a waiting lease q1 that fits nowhere.
func moveCal(t *testing.T, pol Policy) *Calendar {
	t.Helper()
	var hosts []Host
	for _, n := range []string{"h1", "h2", "h3"} {
		hosts = append(hosts, Host{Name: n, Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}, Cordoned: n == "h3",
			SuspendRate: int64(model.GiB), ResumeRate: int64(model.GiB)})
	}
	c, err := New(hosts, pol)
	if err != nil {
		t.Fatal(err)
	}
	m := func(cpu int64) Request {
		return Request{Resources: model.Resources{MilliCPU: cpu, Memory: 2 * model.GiB}}
	}
	for _, l := range []Lease{
		{ID: "be1", Project: "a", Kind: BestEffort, Members: []Request{m(2000)}, Duration: 3 * time.Hour},
		{ID: "cl", Project: "a", Kind: BestEffort, Members: []Request{m(1000), m(2000), m(1000)}, Duration: 3 * time.Hour},
		{ID: "q1", Project: "a", Kind: BestEffort, Members: []Request{m(4000), m(4000)}, Duration: time.Hour},
	} {
		if _, err := c.Submit(l, epoch); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(epoch)
	if v, _ := c.Get("cl"); v.State != StateRunning || v.Hosts[0] == v.Hosts[1] {
		t.Fatalf("cl %+v, want it running on two hosts", v)
	}
	return c
}

func TestMoveErrors(t *testing.T) {
	c := moveCal(t, DefaultPolicy())
	at := epoch.Add(10 * time.Minute)
	big := model.Resources{MilliCPU: 4000, Memory: 2 * model.GiB}
	neg := model.Resources{MilliCPU: -1}
	tests := []struct {
		name   string
		call   func() error
		is     error
		reason Reason
		msg    string
	}{
		{"unknown lease", func() error { _, err := c.BeginMove("nope", 0, "h2", nil, at); return err }, ErrNotFound, "", "nope"},
		{"unknown host", func() error { _, err := c.BeginMove("be1", 0, "h9", nil, at); return err }, ErrUnknownHost, "", "h9"},
		{"member out of range", func() error { _, err := c.BeginMove("be1", 1, "h2", nil, at); return err }, ErrInvalid, "", "no member 1"},
		{"already there", func() error { _, err := c.BeginMove("be1", 0, "h1", nil, at); return err }, ErrInvalid, "", "on h1 already"},
		{"waiting", func() error { _, err := c.BeginMove("q1", 0, "h2", nil, at); return err }, ErrInvalid, "", "holds no slots"},
		{"negative size", func() error { _, err := c.BeginMove("be1", 0, "h2", &neg, at); return err }, ErrInvalid, "", "negative"},
		{"cordoned", func() error { _, err := c.BeginMove("be1", 0, "h3", nil, at); return err }, nil, ReasonMove, "h3 is cordoned"},
		{"no room", func() error { _, err := c.BeginMove("be1", 0, "h2", &big, at); return err }, nil, ReasonMove, "cpu requested 4.00 cores, at most"},
		{"end without move", func() error { _, err := c.EndMove("be1", 0, true, at); return err }, ErrInvalid, "", "no move in progress"},
		{"resize negative", func() error { _, err := c.Resize("be1", 0, neg, at); return err }, ErrInvalid, "", "negative"},
		{"resize member", func() error { _, err := c.Resize("q1", 5, big, at); return err }, ErrInvalid, "", "no member 5"},
		{"resize too large", func() error {
			_, err := c.Resize("q1", 0, model.Resources{MilliCPU: 8000}, at)
			return err
		}, nil, ReasonResize, "too large"},
		{"target of waiting", func() error { _, err := c.ResizeTarget("q1", 0, big, at); return err }, ErrInvalid, "", "holds no slots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := c.Snapshot()
			err := tt.call()
			var r *Refusal
			switch {
			case err == nil:
				t.Fatal("no error")
			case tt.is != nil && !errors.Is(err, tt.is):
				t.Fatalf("got %v, want %v", err, tt.is)
			case tt.reason != "" && (!errors.As(err, &r) || r.Reason != tt.reason):
				t.Fatalf("got %v, want a refusal (%s)", err, tt.reason)
			case !strings.Contains(err.Error(), tt.msg):
				t.Fatalf("got %q, want it to say %q", err, tt.msg)
			}
			if after := c.Snapshot(); !reflect.DeepEqual(before.Leases, after.Leases) {
				t.Fatal("a refused call changed the leases")
			}
		})
	}
}

// restored is a copy of c restored from its snapshot through JSON, as
// the control plane stores it; it must have the same snapshot.
func restored(t *testing.T, c *Calendar) *Calendar {
	t.Helper()
	b, err := json.Marshal(c.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	var hosts []Host
	for _, h := range c.order {
		hosts = append(hosts, h.Host)
	}
	r, err := Restore(hosts, c.pol, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Snapshot(), r.Snapshot()) {
		t.Fatal("restored snapshot differs")
	}
	return r
}

// drain advances c event by event, ending each migration the calendar
// gives out (ok or not) halfway through the time it allows, and returns
// the log and the chart.
func drain(t *testing.T, c *Calendar, ok bool) string {
	t.Helper()
	var b strings.Builder
	var log func(as []Action, err error)
	log = func(as []Action, err error) {
		for _, a := range as {
			b.WriteString(fmtActions([]Action{a})[0] + "\n")
			if a.Kind == ActMigrate {
				log(c.EndMove(a.Lease, a.Member, ok, a.At.Add(a.Duration/2)))
			}
		}
		if err != nil {
			b.WriteString("error: " + err.Error() + "\n")
		}
		if err := c.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		n, more := c.NextEvent()
		if !more {
			break
		}
		log(c.Advance(n), nil)
	}
	b.WriteString(c.Gantt(epoch, epoch.Add(5*time.Hour), 40))
	return b.String()
}

// TestMoveRestore: a calendar restored from its records in the middle of
// a move (of a cluster member, resized) does the same as the original
// from then on.
func TestMoveRestore(t *testing.T) {
	var hosts []Host
	for _, n := range []string{"h1", "h2"} {
		hosts = append(hosts, Host{Name: n, Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}})
	}
	c, err := New(hosts, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	m := Request{Resources: model.Resources{MilliCPU: 1000, Memory: model.GiB}}
	if _, err := c.Submit(Lease{ID: "cl", Project: "a", Kind: Immediate, Members: []Request{m, m}, Duration: 3 * time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	res := model.Resources{MilliCPU: 2000, Memory: 2 * model.GiB}
	if _, err := c.BeginMove("cl", 1, "h2", &res, epoch.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("cl"); v.Moving[1] != "h2" || v.Hosts[1] != "h1" {
		t.Fatalf("cl %+v, want member 1 moving from h1 to h2", v)
	}
	r := restored(t, c)
	end := func(c *Calendar) string {
		as, err := c.EndMove("cl", 1, true, epoch.Add(20*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(fmtActions(as), "\n") + drain(t, c, true)
	}
	if a, b := end(c), end(r); a != b {
		t.Fatalf("restored calendar differs:\n%s\n---- restored:\n%s", a, b)
	}
	if rec, _ := r.Record("cl"); rec.Members[1].Resources != res || rec.Members[0].Resources != m.Resources {
		t.Errorf("cl members %+v, want member 1 resized", rec.Members)
	}
}

// TestMigrationRestore: restored after it decided a migration, the
// calendar does the same as the original, whether the migration works or
// fails (the lease is then suspended in time for the reservation).
func TestMigrationRestore(t *testing.T) {
	for _, ok := range []bool{true, false} {
		c := migrateCal(t)
		r := restored(t, c)
		a, b := drain(t, c, ok), drain(t, r, ok)
		if a != b {
			t.Fatalf("ok %v: restored calendar differs:\n%s\n---- restored:\n%s", ok, a, b)
		}
		want := "migrate be1 member 0 h1 -> h2"
		if !ok {
			want = "suspend be1 on h1 (preempted by ar)"
		}
		if !strings.Contains(a, want) {
			t.Errorf("ok %v: want %q in\n%s", ok, want, a)
		}
	}
}

// migrateCal is a calendar of two hosts where be1 (2 cores, 2Gi) runs on
// h1 and the admission of reservation ar, made at 10m, migrates it to h2.
func migrateCal(t *testing.T) *Calendar {
	t.Helper()
	pol := DefaultPolicy()
	pol.Migrate = true
	hosts := []Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}},
		{Name: "h2", Capacity: model.Resources{MilliCPU: 6000, Memory: 8 * model.GiB}}}
	for i := range hosts {
		hosts[i].SuspendRate, hosts[i].ResumeRate = int64(model.GiB), int64(model.GiB)
	}
	c, err := New(hosts, pol)
	if err != nil {
		t.Fatal(err)
	}
	req := func(cpu int64) []Request {
		return []Request{{Resources: model.Resources{MilliCPU: cpu, Memory: 2 * model.GiB}}}
	}
	if _, err := c.Submit(Lease{ID: "be1", Project: "a", Kind: BestEffort, Members: req(2000), Duration: 3 * time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	if _, err := c.Submit(Lease{ID: "im1", Project: "b", Kind: Immediate, Members: req(3000), Duration: 5 * time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	adm, err := c.Submit(Lease{ID: "ar", Project: "b", Kind: Reservation, Members: req(4000), Start: epoch.Add(time.Hour), Duration: time.Hour},
		epoch.Add(10*time.Minute))
	if err != nil || len(adm.Victims) != 1 || adm.Victims[0].Kind != ActMigrate {
		t.Fatalf("admission %+v, %v: want be1 migrated", adm, err)
	}
	return c
}

// TestMigrationEndsEarly: a move that ends before the time planned for it
// has the guest run at the destination from its end: the chart segment
// there runs from then, and the move's end planned is not kept.
func TestMigrationEndsEarly(t *testing.T) {
	for _, early := range []time.Duration{0, time.Second, -1} {
		c := migrateCal(t)
		var mig Action
		for i := 0; i < 20 && mig.Kind != ActMigrate; i++ {
			n, more := c.NextEvent()
			if !more {
				t.Fatal("no migration given out")
			}
			for _, a := range c.Advance(n) {
				if a.Kind == ActMigrate {
					mig = a
				}
			}
		}
		end := mig.At.Add(early)
		if early < 0 {
			end = mig.At.Add(mig.Duration) // as planned
		}
		if _, err := c.EndMove("be1", 0, true, end); err != nil {
			t.Fatal(err)
		}
		if err := c.checkInvariants(); err != nil {
			t.Fatal(err)
		}
		rec, _ := c.Record("be1")
		s := rec.Segments[len(rec.Segments)-1]
		if s.Host != "h2" || !s.From.Equal(mig.At) || !s.RunFrom.Equal(end) || !s.RunTo.Equal(rec.Hold.RunEnd) {
			t.Errorf("ended %s after its start (%s planned): last segment %+v, want on h2 from %s, running from %s to %s",
				end.Sub(mig.At), mig.Duration, s, mig.At, end, rec.Hold.RunEnd)
		}
		restored(t, c)
	}
}

// TestResizeAccounting: a resize charges the project's core-hours for the
// rest of the run at the new size, and what the lease used before counts
// at the old size when it ends early; fair share counts the new cores.
func TestResizeAccounting(t *testing.T) {
	pol := DefaultPolicy()
	pol.Quotas = map[string]Quota{"a": {CoreHours: 100}}
	pol.FairShare = &FairShare{}
	h := Host{Name: "h1", Capacity: model.Resources{MilliCPU: 8000, Memory: 8 * model.GiB}}
	c, err := New([]Host{h}, pol)
	if err != nil {
		t.Fatal(err)
	}
	l := Lease{ID: "l", Project: "a", Kind: Immediate, Duration: 2 * time.Hour,
		Members: []Request{{Resources: model.Resources{MilliCPU: 2000, Memory: model.GiB}}}}
	if _, err := c.Submit(l, epoch); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	charged := func() float64 { r, _ := c.Record("l"); return r.ChargedCoreSeconds / 3600 }
	if got := charged(); got != 4 {
		t.Fatalf("charged %v core-hours, want 4", got)
	}
	// 2 cores for 1h, then 4 cores for the hour left: 6.
	if _, err := c.Resize("l", 0, model.Resources{MilliCPU: 4000, Memory: model.GiB}, epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := charged(); got != 6 {
		t.Fatalf("after growing: charged %v core-hours, want 6", got)
	}
	// Fair share: 2 cores for 1h then 4 cores for 30m: 2h of core time.
	if got := c.FairShareUsage("a", epoch.Add(90*time.Minute)) / 3600; got != 4 {
		t.Errorf("fair-share usage %v core-hours, want 4", got)
	}
	// Ended at 1h30m: 2 + 2 core-hours used, the rest refunded.
	if _, err := c.Finish("l", epoch.Add(90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := charged(); got != 4 {
		t.Errorf("after finishing early: charged %v core-hours, want 4", got)
	}
	// The quota refuses growth it cannot pay for.
	l2 := l
	l2.ID, l2.Duration = "l2", 20*time.Hour
	if _, err := c.Submit(l2, epoch.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var r *Refusal
	_, err = c.Resize("l2", 0, model.Resources{MilliCPU: 8000, Memory: model.GiB}, epoch.Add(2*time.Hour))
	// 44 core-hours charged of 100: 56 left pay for 2.8 more cores for 20h.
	if !errors.As(err, &r) || r.Resource != "core-hours" || r.MaxNow.MilliCPU != 4800 {
		t.Fatalf("growth past the core-hours: got %v", err)
	}
	t.Log(err)
}

// TestInTheWayFromAfterMove: a resize refused for a lease that was moved
// to the host names when that lease came to the host (the move), not when
// its hold began, and a calendar restored from its snapshot says the
// same: its allocations begin with their hold, its chart does not.
func TestInTheWayFromAfterMove(t *testing.T) {
	hosts := []Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 8000, Memory: 16 * model.GiB}},
		{Name: "h2", Capacity: model.Resources{MilliCPU: 8000, Memory: 16 * model.GiB}}}
	c, err := New(hosts, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []Lease{
		{ID: "be1", Project: "a", Kind: BestEffort, Duration: 5 * time.Hour, Members: []Request{member(6, model.GiB)}},
		{ID: "be2", Project: "a", Kind: BestEffort, Duration: 5 * time.Hour, Members: []Request{member(4, model.GiB)}},
	} {
		if _, err := c.Submit(l, epoch); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(epoch)
	two := model.Resources{MilliCPU: 2000, Memory: model.GiB}
	if _, err := c.Move("be1", 0, "h2", &two, epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	at := epoch.Add(2 * time.Hour)
	c.Advance(at)
	for i, cal := range []*Calendar{c, restoreCheck(t, c, 0, 0)} {
		_, err := cal.Resize("be2", 0, model.Resources{MilliCPU: 8000, Memory: model.GiB}, at)
		var r *Refusal
		if !errors.As(err, &r) || r.Host != "h2" || r.InTheWay != "be1" || !r.InTheWayFrom.Equal(epoch.Add(time.Hour)) {
			t.Fatalf("calendar %d: resize of be2: %v (%+v), want be1 in the way on h2 from 01:00", i, err, r)
		}
	}
}
