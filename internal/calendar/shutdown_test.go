package calendar

import (
	"errors"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

func TestShutdownTimeValidated(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{
		{0, true},
		{30 * time.Second, true},
		{MaxBootTime, true},
		{-time.Second, false},
		{MaxBootTime + time.Nanosecond, false},
	} {
		p := DefaultPolicy()
		p.ShutdownTime = tc.d
		_, err := New(nil, p)
		if tc.ok != (err == nil) {
			t.Errorf("shutdown time %v: error %v, want ok %v", tc.d, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "shutdown time")) {
			t.Errorf("shutdown time %v: error %q does not name the shutdown time or wrap ErrInvalid", tc.d, err)
		}
	}
}

// TestRanOut: a lease whose run ends by the time its slots are wanted
// and that only shuts down then cannot be displaced (nothing left to
// suspend or requeue, and a shutdown is not cut short).
func TestRanOut(t *testing.T) {
	const h = int64(time.Hour)
	for _, tc := range []struct {
		name           string
		fate           fate
		runTo, to, rel int64
		want           bool
	}{
		{"run goes on past rel", fateEnd, 2 * h, 2*h + 10, h, false},
		{"run over by rel, shutting down", fateEnd, h, h + 10, h, true},
		{"run over before rel, shut down before", fateEnd, h, h + 10, h + 20, true},
		{"no shutdown: the hold's end says it all", fateEnd, h, h, h, false},
		{"to be suspended", fateSuspend, h, h + 10, h, false},
		{"to be requeued", fateRequeue, h, h, h, false},
	} {
		l := &lease{fate: tc.fate, runTo: tc.runTo, to: tc.to}
		if got := ranOut(l, tc.rel); got != tc.want {
			t.Errorf("%s: ranOut = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestShutdownRestored: a calendar restored while a lease's guests shut
// down sends no second end action, frees the slots when the shutdown is
// over, and starts what waits for them then, as the one it was saved from.
func TestShutdownRestored(t *testing.T) {
	p := DefaultPolicy()
	p.ShutdownTime = 5 * time.Minute
	hosts := []Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}}}
	c, err := New(hosts, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		l := Lease{ID: id, Project: "p", Kind: BestEffort, Duration: time.Hour,
			Members: []Request{{Resources: model.Resources{MilliCPU: 4000, Memory: model.GiB}}}}
		if _, err := c.Submit(l, epoch); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(epoch)
	as := c.Advance(epoch.Add(61 * time.Minute))
	if got := strings.Join(fmtActions(as), "; "); got != "01:00:00 end a on h1" {
		t.Fatalf("actions %q", got)
	}
	snap := c.Snapshot()
	r, err := Restore(hosts, p, snap)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	v, _ := r.Get("a")
	if !v.ShuttingDown || !v.ShutdownTo.Equal(epoch.Add(65*time.Minute)) || !v.End.Equal(epoch.Add(time.Hour)) {
		t.Fatalf("restored view %+v", v)
	}
	for _, x := range []*Calendar{c, r} {
		as := x.Advance(epoch.Add(3 * time.Hour))
		if got := strings.Join(fmtActions(as), "; "); got != "01:05:00 start b on h1; 02:05:00 end b on h1" {
			t.Fatalf("after the shutdown: %q", got)
		}
	}
}
