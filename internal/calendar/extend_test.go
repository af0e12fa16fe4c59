package calendar

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

func at(d time.Duration) time.Time { return epoch.Add(d) }

// TestExtendErrors: calls that make no sense are errors, and change nothing.
func TestExtendErrors(t *testing.T) {
	c, _ := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 8000, Memory: 16 * model.GiB}}}, DefaultPolicy())
	submit := func(l Lease) {
		t.Helper()
		if _, err := c.Submit(l, epoch); err != nil {
			t.Fatal(err)
		}
	}
	one := []Request{member(1, model.GiB)}
	submit(Lease{ID: "run", Kind: Immediate, Members: one, Duration: 2 * time.Hour})
	submit(Lease{ID: "done", Kind: Immediate, Members: one, Duration: 10 * time.Minute})
	submit(Lease{ID: "dl", Kind: Deadline, Members: one, Duration: time.Hour, Deadline: at(90 * time.Minute)})
	submit(Lease{ID: "ar", Kind: Reservation, Members: one, Duration: time.Hour, Start: at(3 * time.Hour)})
	submit(Lease{ID: "q", Kind: BestEffort, Members: []Request{member(8, model.GiB)}, Duration: time.Hour})
	c.Advance(at(30 * time.Minute))
	tests := []struct {
		name string
		call func() ([]Action, error)
		want error
		msg  string
	}{
		{"unknown lease", func() ([]Action, error) { return c.Extend("nope", time.Hour, at(30*time.Minute)) }, ErrNotFound, "extend lease nope"},
		{"finished lease", func() ([]Action, error) { return c.Extend("done", time.Hour, at(30*time.Minute)) }, ErrFinished, "it is done"},
		{"zero", func() ([]Action, error) { return c.Extend("run", 0, at(30*time.Minute)) }, ErrInvalid, "extension by 0"},
		{"past deadline", func() ([]Action, error) { return c.Extend("dl", time.Hour, at(30*time.Minute)) }, ErrInvalid, "after its deadline 2000-01-01T01:30:00Z"},
		{"shorten below ran", func() ([]Action, error) { return c.Extend("run", -100*time.Minute, at(30*time.Minute)) }, ErrInvalid, "end its run at 2000-01-01T00:20:00Z, not after now (2000-01-01T00:30:00Z): it has only 1h30m0s left to run"},
		{"shorten to now", func() ([]Action, error) { return c.Extend("run", -90*time.Minute, at(30*time.Minute)) }, ErrInvalid, "not after now"},
		{"shorten before the start", func() ([]Action, error) { return c.Extend("ar", -time.Hour, at(30*time.Minute)) }, ErrInvalid, "leaves no run"},
		{"shorten a queued lease to nothing", func() ([]Action, error) { return c.Extend("q", -2*time.Hour, at(30*time.Minute)) }, ErrInvalid, "leaves no run: it has 1h0m0s left"},
		{"until a queued lease", func() ([]Action, error) { return c.ExtendTo("q", at(5*time.Hour), at(30*time.Minute)) }, ErrInvalid, "no end to move"},
		{"until the same end", func() ([]Action, error) { return c.ExtendTo("run", at(2*time.Hour), at(30*time.Minute)) }, ErrInvalid, "already ends"},
		{"within the deadline", func() ([]Action, error) { return c.Extend("dl", 30*time.Minute, at(30*time.Minute)) }, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := c.Snapshot()
			_, err := tt.call()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q, want it to say %q", err, tt.msg)
			}
			if after := c.Snapshot(); js(t, before) != js(t, after) {
				t.Errorf("a failed extension changed the calendar:\n%s\n%s", js(t, before), js(t, after))
			}
		})
	}
	if v, _ := c.Get("dl"); !v.End.Equal(at(90 * time.Minute)) {
		t.Errorf("deadline lease ends %v, want at its deadline", v.End)
	}
}

// TestExtendPreempted: a lease to be suspended for a reservation is owed
// more (or less) run time; shortened to end before its suspension, it ends
// there instead, and the reservation starts on time.
func TestExtendPreempted(t *testing.T) {
	for _, tt := range []struct {
		name    string
		d       time.Duration
		acts    string
		remain  time.Duration // after the suspension
		endView time.Duration // the view's end after the extension
	}{
		{"longer", time.Hour, "suspend be", 4 * time.Hour, 2 * time.Hour},
		{"shorter", -2 * time.Hour, "suspend be", time.Hour, 2 * time.Hour},
		{"ends before", -3*time.Hour - 30*time.Minute, "end be", 0, 90 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := New(oneHost(), DefaultPolicy())
			if _, err := c.Submit(Lease{ID: "be", Kind: BestEffort, Members: []Request{member(4, model.GiB)}, Duration: 5 * time.Hour}, epoch); err != nil {
				t.Fatal(err)
			}
			c.Advance(epoch)
			if _, err := c.Submit(Lease{ID: "ar", Kind: Reservation, Members: []Request{member(4, model.GiB)}, Duration: time.Hour, Start: at(2 * time.Hour)}, epoch); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Extend("be", tt.d, at(time.Hour)); err != nil {
				t.Fatal(err)
			}
			v, _ := c.Get("be")
			if !v.End.Equal(at(tt.endView)) {
				t.Errorf("view ends %s, want %s", rel(v.End), rel(at(tt.endView)))
			}
			restoreCheck(t, c, 0, 0)
			var got []string
			for _, a := range c.Advance(at(2 * time.Hour)) {
				got = append(got, string(a.Kind)+" "+a.Lease)
			}
			if want := tt.acts + ",start ar"; strings.Join(got, ",") != want {
				t.Errorf("actions %v, want %s", got, want)
			}
			if v, _ := c.Get("be"); v.Remaining != tt.remain {
				t.Errorf("remaining %v, want %v", v.Remaining, tt.remain)
			}
			if err := c.checkInvariants(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestExtendQuota: the extended window respects the project's concurrent
// quota and core-hours; the extra time is charged, and refunded when the
// lease is shortened.
func TestExtendQuota(t *testing.T) {
	c, _ := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 8000, Memory: 16 * model.GiB}}},
		Policy{Quotas: map[string]Quota{"a": {MilliCPU: 4000, CoreHours: 10}}})
	sub := func(l Lease) {
		t.Helper()
		if _, err := c.Submit(l, epoch); err != nil {
			t.Fatal(err)
		}
	}
	sub(Lease{ID: "a1", Project: "a", Kind: Immediate, Members: []Request{member(2, model.GiB)}, Duration: time.Hour})
	sub(Lease{ID: "a2", Project: "a", Kind: Reservation, Members: []Request{member(3, model.GiB)}, Duration: time.Hour, Start: at(90 * time.Minute)})
	charged := func() float64 {
		for _, u := range c.Snapshot().Projects {
			if u.Project == "a" {
				return u.ChargedCoreSeconds / 3600
			}
		}
		return -1
	}
	if got := charged(); got != 5 {
		t.Fatalf("charged %v core-hours, want 5", got)
	}
	// The concurrent quota (4 cores) stops a1 at 1h30m, when a2 begins.
	_, err := c.Extend("a1", time.Hour, epoch)
	var r *Refusal
	if !errors.As(err, &r) || r.Reason != ReasonExtend || r.Host != "" || r.Longest != 30*time.Minute ||
		!strings.Contains(r.Error(), "project quota: cpu: project a would hold 5.00 cores of 4.00 cores") ||
		!strings.Contains(r.Error(), "longest extension possible now: 30m0s") {
		t.Fatalf("got %v, want a quota refusal with 30m the longest", err)
	}
	if _, err := c.Extend("a1", 30*time.Minute, epoch); err != nil {
		t.Fatal(err)
	}
	if got := charged(); got != 6 {
		t.Fatalf("charged %v core-hours after 30m more of 2 cores, want 6", got)
	}
	// Core-hours: 4 are left, which pay for 2h of 2 cores.
	_, err = c.Extend("a2", 2*time.Hour, epoch)
	if !errors.As(err, &r) || r.Resource != "core-hours" || r.Longest != 80*time.Minute ||
		!strings.Contains(r.Error(), "core-hours: 2h0m0s more needs 6.00, project a has 4.00 of 10.00 left") {
		t.Fatalf("got %v, want a core-hour refusal with 1h20m the longest", err)
	}
	if _, err := c.Extend("a1", -time.Hour, epoch); err != nil {
		t.Fatal(err)
	}
	if got := charged(); math.Abs(got-4) > 1e-9 {
		t.Fatalf("charged %v core-hours after a1 was cut to 30m, want 4", got)
	}
	restoreCheck(t, c, 0, 0)
}

// TestExtendLongest: the longest extension is found over several hosts and
// members, and the refusal names the host that runs out first.
func TestExtendLongest(t *testing.T) {
	c, _ := New([]Host{
		{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}},
		{Name: "h2", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}},
	}, DefaultPolicy())
	sub := func(l Lease) {
		t.Helper()
		if _, err := c.Submit(l, epoch); err != nil {
			t.Fatal(err)
		}
	}
	sub(Lease{ID: "x", Kind: Immediate, Members: []Request{member(4, model.GiB), member(4, model.GiB)}, Duration: time.Hour})
	sub(Lease{ID: "r1", Kind: Reservation, Members: []Request{member(1, model.GiB)}, Duration: time.Hour, Start: at(3 * time.Hour)})
	sub(Lease{ID: "r2", Kind: Reservation, Members: []Request{member(1, model.GiB)}, Duration: time.Hour, Start: at(2*time.Hour + 30*time.Second + 1)})
	sub(Lease{ID: "r3", Kind: Reservation, Members: []Request{member(4, model.GiB)}, Duration: time.Hour, Start: at(150 * time.Minute)})
	c.Advance(epoch)
	_, err := c.Extend("x", 5*time.Hour, at(10*time.Minute))
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a refusal", err)
	}
	// r1 and r2 land on h1 (first fit), r3 on h2 at 2h30m; h1 runs out
	// first, at 2h00m30s+1ns: 1h0m30s is the longest.
	if r.Host != "h1" || r.Resource != "cpu" || r.Longest != time.Hour+30*time.Second || strings.Join(r.Blocking, ",") != "r1,r2" {
		t.Errorf("got host %s resource %s longest %v blocking %v: %v", r.Host, r.Resource, r.Longest, r.Blocking, r)
	}
	if _, err := c.Extend("x", r.Longest, at(10*time.Minute)); err != nil {
		t.Fatalf("the longest extension: %v", err)
	}
	if err := c.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

func TestOvercommitValidation(t *testing.T) {
	for _, tt := range []struct {
		o    Overcommit
		want string
	}{
		{Overcommit{}, ""},
		{Overcommit{CPU: 1, Memory: 1.5, Disk: 3, Bandwidth: 2}, ""},
		{Overcommit{CPU: 0.5}, "overcommit of cpu is 0.5"},
		{Overcommit{Memory: -1}, "overcommit of memory is -1"},
		{Overcommit{Disk: math.NaN()}, "overcommit of disk is NaN"},
		{Overcommit{Bandwidth: math.Inf(1)}, "overcommit of bandwidth is +Inf"},
	} {
		c, err := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 2000, Memory: model.GiB}}}, Policy{Overcommit: tt.o})
		if tt.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tt.o, err)
				continue
			}
			want := vec{overcommit(2000, tt.o.ratios()[dCPU]), overcommit(int64(model.GiB), tt.o.ratios()[dMem]), 0, 0, hostWorkspaces}
			if got := c.order[0].cap; got != want {
				t.Errorf("%+v: capacity %v, want %v", tt.o, got, want)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want ErrInvalid saying %q", tt.o, err, tt.want)
		}
	}
}
