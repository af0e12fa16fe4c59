package calendar

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"vgrid/internal/model"
)

// TestBookedResumeRestored: a deadline lease suspended for a reservation,
// its resume booked, is the same after Snapshot and Restore (the booked
// slots taken, the record equal), and both calendars then do the same.
func TestBookedResumeRestored(t *testing.T) {
	hosts := []Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB},
		SuspendRate: int64(model.GiB), ResumeRate: int64(model.GiB)}}
	c, t0, dl, adm, err := suspendForReservation(t, hosts, DefaultPolicy(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(adm.Resumes) != 1 || adm.Resumes[0].Lease != "dl1" || len(adm.Victims) != 1 || adm.Victims[0].Kind != ActSuspend {
		t.Fatalf("admission %+v: want dl1 suspended and its resume booked", adm)
	}
	rec, _ := c.Record("dl1")
	if rec.Next == nil || !rec.Next.Resume || rec.Next.From.Before(rec.Hold.To) || !rec.Next.From.Equal(t0.Add(90*time.Minute)) {
		t.Fatalf("record %+v: want a booked resume from ar1's end, after the hold's end %s", rec.Next, rec.Hold.To)
	}
	r := restoreCheck(t, c, 0, 0)
	if got, _ := r.Record("dl1"); !reflect.DeepEqual(got, rec) {
		t.Fatalf("restored record\n%+v\nwant\n%+v", got, rec)
	}
	end := t0.Add(6 * time.Hour)
	a, b := c.Advance(end), r.Advance(end)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("after the restore:\n%v\nwant\n%v", b, a)
	}
	v, _ := r.Get("dl1")
	if v.State != StateDone || v.End.After(dl.Deadline) {
		t.Fatalf("dl1 %+v: want done by %s", v, dl.Deadline)
	}
}

// TestBookedResumeQuota: a booked resume counts against its project's
// concurrent quota as a hold does (the invariants' quota tables count it
// too), in the calendar and in one restored from its snapshot: a lease of
// the same project that would overlap it beyond the quota is refused.
func TestBookedResumeQuota(t *testing.T) {
	hosts := []Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB},
		SuspendRate: int64(model.GiB), ResumeRate: int64(model.GiB)},
		{Name: "h2", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}}}
	pol := DefaultPolicy()
	pol.Quotas = map[string]Quota{"a": {MilliCPU: 4000}}
	// ar1 wants both hosts whole: dl1 is suspended, its resume booked
	// after ar1 on h1.
	c, t0, _, adm, err := suspendForReservation(t, hosts, pol, 2)
	if err != nil || len(adm.Resumes) != 1 {
		t.Fatalf("admission %+v, %v: want dl1's resume booked", adm, err)
	}
	rec, _ := c.Record("dl1")
	if rec.Next == nil {
		t.Fatal("dl1: no booked resume")
	}
	for _, cal := range []*Calendar{c, restoreCheck(t, c, 0, 0)} {
		if err := cal.checkInvariants(); err != nil {
			t.Fatal(err)
		}
		// h2 is free during dl1's booked resume, but project a's quota
		// is not.
		ar2 := Lease{ID: "ar2", Project: "a", Kind: Reservation, Start: rec.Next.From.Add(time.Minute), Duration: 10 * time.Minute,
			Members: []Request{member(1, model.GiB)}}
		var r *Refusal
		if _, err := cal.Submit(ar2, t0.Add(20*time.Minute)); !errors.As(err, &r) || r.Reason != ReasonQuota {
			t.Fatalf("ar2 over dl1's booked resume: %v, want a quota refusal", err)
		}
	}
}

// suspendForReservation makes a calendar of hosts under pol where the
// deadline lease dl1 (2h of run by 5h, the whole of h1) runs from t0 and
// the reservation ar1, asked at 10m for [1h, 1h30m) with members whole
// hosts, needs its room: ar1's admission (dl1 suspended, its resume
// booked) and its error are returned.
func suspendForReservation(t *testing.T, hosts []Host, pol Policy, members int) (*Calendar, time.Time, Lease, Admission, error) {
	t.Helper()
	c, err := New(hosts, pol)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	dl := Lease{ID: "dl1", Project: "a", Kind: Deadline, Deadline: t0.Add(5 * time.Hour), Duration: 2 * time.Hour,
		Members: []Request{member(4, 4*model.GiB)}}
	if _, err := c.Submit(dl, t0); err != nil {
		t.Fatal(err)
	}
	c.Advance(t0)
	ar := Lease{ID: "ar1", Project: "b", Kind: Reservation, Start: t0.Add(time.Hour), Duration: 30 * time.Minute}
	for range members {
		ar.Members = append(ar.Members, member(4, 4*model.GiB))
	}
	adm, err := c.Submit(ar, t0.Add(10*time.Minute))
	return c, t0, dl, adm, err
}
