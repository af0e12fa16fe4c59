package calendar

import (
	"errors"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

// TestStageAhead: a reservation's or deadline lease's fresh start stages
// its image ahead of its hold (a stage action at start-stage-boot, slots
// from start-boot) when some host must fetch it; an immediate lease stages
// within its hold; nothing to stage, no stage action. A best-effort lease
// submitted during the staging window runs there if it is done by the
// hold's start, and a calendar restored mid-staging does the same.
func TestStageAhead(t *testing.T) {
	const stageRate = 10 * int64(model.MiB)
	img := Image{Name: "big", Size: model.GiB} // 1024Mi / 10Mi/s: 103s (rounded up)
	cases := []struct {
		name      string
		kind      Kind
		image     Image
		rate      int64
		cached    bool
		wantFrom  time.Duration // hold's start, from time zero
		wantStage time.Duration // stage action's time; <0: none
		wantStart time.Duration
	}{
		{"reservation uncached", Reservation, img, stageRate, false, time.Hour - 5*time.Second, time.Hour - 108*time.Second, time.Hour - 5*time.Second},
		{"reservation cached", Reservation, img, stageRate, true, time.Hour - 5*time.Second, -1, time.Hour - 5*time.Second},
		{"reservation rate unknown", Reservation, img, 0, false, time.Hour - 5*time.Second, -1, time.Hour - 5*time.Second},
		{"reservation no image size", Reservation, Image{Name: "big"}, stageRate, false, time.Hour - 5*time.Second, -1, time.Hour - 5*time.Second},
		// A deadline lease asked at 50m runs at the earliest, 108s later.
		{"deadline uncached", Deadline, img, stageRate, false, 50*time.Minute + 103*time.Second, 50 * time.Minute, 50*time.Minute + 103*time.Second},
		// An immediate lease at 50m holds its host through its staging.
		{"immediate uncached", Immediate, img, stageRate, false, 50 * time.Minute, 50 * time.Minute, 50*time.Minute + 103*time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := Host{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}, StageRate: tc.rate, BootTime: 5 * time.Second}
			if tc.cached {
				h.Images = []string{"big"}
			}
			c, err := New([]Host{h}, DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			l := Lease{ID: "l", Project: "p", Kind: tc.kind, Members: []Request{member(4, model.GiB)}, Duration: time.Hour, Image: tc.image}
			switch tc.kind {
			case Reservation:
				l.Start = at(time.Hour)
			case Deadline:
				l.Deadline = at(3 * time.Hour)
			}
			if _, err := c.Submit(l, at(50*time.Minute)); err != nil {
				t.Fatal(err)
			}
			r, _ := c.Record("l")
			if !r.Hold.From.Equal(at(tc.wantFrom)) {
				t.Errorf("hold from %s, want %s", rel(r.Hold.From), rel(at(tc.wantFrom)))
			}
			// Restored before anything happens, the calendar acts the same.
			c = restoreCheck(t, c, 0, 0)
			var stage, start []string
			for _, a := range c.Advance(at(3 * time.Hour)) {
				switch a.Kind {
				case ActStage:
					stage = append(stage, rel(a.At))
				case ActStart:
					start = append(start, rel(a.At))
				}
			}
			var wantStage []string
			if tc.wantStage >= 0 {
				wantStage = []string{rel(at(tc.wantStage))}
			}
			if strings.Join(stage, ",") != strings.Join(wantStage, ",") {
				t.Errorf("stage actions %v, want %v", stage, wantStage)
			}
			if want := rel(at(tc.wantStart)); strings.Join(start, ",") != want {
				t.Errorf("start actions %v, want %s", start, want)
			}
		})
	}
}

// TestStageWindowFreeForOthers: while a reservation stages, its host runs
// a best-effort lease that ends by the reservation's boot; one that would
// run past it waits. Restored mid-staging, the calendar still starts the
// reservation on time.
func TestStageWindowFreeForOthers(t *testing.T) {
	h := Host{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}, StageRate: 10 * int64(model.MiB), BootTime: 5 * time.Second}
	c, err := New([]Host{h}, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	ar := Lease{ID: "ar", Project: "p", Kind: Reservation, Members: []Request{member(4, model.GiB)}, Start: at(time.Hour), Duration: time.Hour,
		Image: Image{Name: "big", Size: model.GiB}}
	if _, err := c.Submit(ar, epoch); err != nil {
		t.Fatal(err)
	}
	// Staging runs [00:58:12, 00:59:55). be-fits runs 60s (plus 5s of
	// boot) from 00:58:30: done by 00:59:35. be-long would not be.
	acts := c.Advance(at(58*time.Minute + 12*time.Second))
	if len(acts) != 1 || acts[0].Kind != ActStage || acts[0].Lease != "ar" || strings.Join(acts[0].Hosts, ",") != "h1" {
		t.Fatalf("actions %+v, want ar's stage on h1", acts)
	}
	c = restoreCheck(t, c, 0, 1)
	for _, l := range []Lease{
		{ID: "be-fits", Project: "q", Kind: BestEffort, Members: []Request{member(4, model.GiB)}, Duration: time.Minute},
		{ID: "be-long", Project: "q", Kind: BestEffort, Members: []Request{member(4, model.GiB)}, Duration: 10 * time.Minute},
	} {
		if _, err := c.Submit(l, at(58*time.Minute+30*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, a := range c.Advance(at(3 * time.Hour)) {
		got = append(got, rel(a.At)+" "+string(a.Kind)+" "+a.Lease)
	}
	want := []string{
		"00:58:30 start be-fits", "00:59:35 end be-fits", "00:59:55 start ar",
		"02:00:00 end ar", "02:00:00 start be-long", "02:10:05 end be-long",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("actions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestStageTooSoon: a reservation whose staging would have to begin
// before now is refused with ReasonTooSoon, naming the image, its size
// and how long staging takes; one whose staging begins exactly now is
// admitted.
func TestStageTooSoon(t *testing.T) {
	h := Host{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}, StageRate: 10 * int64(model.MiB), BootTime: 5 * time.Second}
	for _, tc := range []struct {
		at     time.Duration
		refuse bool
	}{
		{time.Hour - 107*time.Second, true},
		{time.Hour - 108*time.Second, false},
	} {
		c, err := New([]Host{h}, DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		l := Lease{ID: "ar", Project: "p", Kind: Reservation, Members: []Request{member(1, model.GiB)}, Start: at(time.Hour), Duration: time.Hour,
			Image: Image{Name: "big", Size: model.GiB}}
		_, err = c.Submit(l, at(tc.at))
		var r *Refusal
		switch {
		case !tc.refuse && err != nil:
			t.Errorf("submit at %s: %v", rel(at(tc.at)), err)
		case tc.refuse && !errors.As(err, &r):
			t.Errorf("submit at %s: %v, want a refusal", rel(at(tc.at)), err)
		case tc.refuse:
			if r.Reason != ReasonTooSoon {
				t.Errorf("reason %s, want %s", r.Reason, ReasonTooSoon)
			}
			for _, s := range []string{"big", "1Gi", "1m43s"} {
				if !strings.Contains(r.Error(), s) {
					t.Errorf("refusal %q does not name %s", r.Error(), s)
				}
			}
		}
	}
}
