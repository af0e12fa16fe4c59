package calendar

import (
	"errors"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

func oneHost() []Host {
	return []Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}}}
}

func member(cores int64, mem model.ByteSize) Request {
	return Request{Resources: model.Resources{MilliCPU: cores * 1000, Memory: mem}}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name  string
		hosts []Host
		pol   Policy
		want  error
	}{
		{"default", oneHost(), DefaultPolicy(), nil},
		{"zero policy", oneHost(), Policy{}, nil},
		{"duplicate host", append(oneHost(), oneHost()...), Policy{}, ErrExists},
		{"unnamed host", []Host{{}}, Policy{}, ErrInvalid},
		{"negative capacity", []Host{{Name: "x", Capacity: model.Resources{MilliCPU: -1}}}, Policy{}, ErrInvalid},
		{"negative rate", []Host{{Name: "x", StageRate: -1}}, Policy{}, ErrInvalid},
		{"bad backfill", nil, Policy{Backfill: "eager"}, ErrInvalid},
		{"bad placement", nil, Policy{Placement: "random"}, ErrInvalid},
		{"negative depth", nil, Policy{Depth: -1}, ErrInvalid},
		{"zero weight", nil, Policy{FairShare: &FairShare{Weights: map[string]float64{"a": 0}}}, ErrInvalid},
		{"negative half-life", nil, Policy{FairShare: &FairShare{HalfLife: -time.Hour}}, ErrInvalid},
		{"negative quota", nil, Policy{Quotas: map[string]Quota{"a": {MilliCPU: -1}}}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.hosts, tt.pol)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSubmitValidation(t *testing.T) {
	ok := Lease{ID: "x", Kind: BestEffort, Members: []Request{member(1, model.GiB)}, Duration: time.Hour}
	mod := func(f func(*Lease)) Lease {
		l := ok
		l.Members = append([]Request(nil), ok.Members...)
		f(&l)
		return l
	}
	tests := []struct {
		name  string
		lease Lease
		want  error
	}{
		{"ok", ok, nil},
		{"empty id", mod(func(l *Lease) { l.ID = "" }), ErrInvalid},
		{"no members", mod(func(l *Lease) { l.Members = nil }), ErrInvalid},
		{"zero duration", mod(func(l *Lease) { l.Duration = 0 }), ErrInvalid},
		{"unknown kind", mod(func(l *Lease) { l.Kind = "someday" }), ErrInvalid},
		{"reservation without start", mod(func(l *Lease) { l.Kind = Reservation }), ErrInvalid},
		{"deadline without deadline", mod(func(l *Lease) { l.Kind = Deadline }), ErrInvalid},
		{"unknown preempt", mod(func(l *Lease) { l.Preempt = "sometimes" }), ErrInvalid},
		{"negative memory", mod(func(l *Lease) { l.Members[0].Resources.Memory = -1 }), ErrInvalid},
		{"negative image", mod(func(l *Lease) { l.Image.Size = -1 }), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := New(oneHost(), DefaultPolicy())
			_, err := c.Submit(tt.lease, epoch)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLifecycleErrors(t *testing.T) {
	c, _ := New(oneHost(), DefaultPolicy())
	be := Lease{ID: "be", Kind: BestEffort, Members: []Request{member(4, model.GiB)}, Duration: time.Hour}
	if _, err := c.Submit(be, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(be, epoch); !errors.Is(err, ErrExists) {
		t.Fatalf("resubmit: got %v, want ErrExists", err)
	}
	// A refused ID may be used again.
	big := Lease{ID: "big", Kind: Immediate, Members: []Request{member(8, model.GiB)}, Duration: time.Hour}
	if _, err := c.Submit(big, epoch); err == nil {
		t.Fatal("too large: got admitted, want refused")
	}
	big.Members = []Request{member(1, model.GiB)}
	if _, err := c.Submit(big, epoch); err != nil {
		t.Fatalf("resubmit after refusal: got %v, want admitted", err)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"cancel unknown", func() error { _, err := c.Cancel("nope", epoch); return err }, ErrNotFound},
		{"finish unknown", func() error { _, err := c.Finish("nope", epoch); return err }, ErrNotFound},
		{"finish queued", func() error { _, err := c.Finish("be", epoch); return err }, ErrInvalid},
		{"remove unknown host", func() error { _, err := c.RemoveHost("nope", epoch); return err }, ErrNotFound},
		{"add existing host", func() error { return c.AddHost(oneHost()[0], epoch) }, ErrExists},
		{"cancel queued", func() error { _, err := c.Cancel("be", epoch); return err }, nil},
		{"cancel twice", func() error { _, err := c.Cancel("be", epoch); return err }, ErrFinished},
	}
	for _, tt := range tests {
		err := tt.call()
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestNextEvent(t *testing.T) {
	c, _ := New(oneHost(), DefaultPolicy())
	if _, ok := c.NextEvent(); ok {
		t.Fatal("empty calendar: got an event, want none")
	}
	if _, err := c.Submit(Lease{ID: "a", Kind: BestEffort, Members: []Request{member(1, model.GiB)}, Duration: time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		want time.Time
		acts string
	}{
		{epoch, "start a"},
		{epoch.Add(time.Hour), "end a"},
	}
	for _, tt := range tests {
		got, ok := c.NextEvent()
		if !ok || !got.Equal(tt.want) {
			t.Fatalf("next event: got %v %v, want %v", got, ok, tt.want)
		}
		as := c.Advance(got)
		if len(as) != 1 || string(as[0].Kind)+" "+as[0].Lease != tt.acts {
			t.Fatalf("advance to %v: got %v, want %s", got, as, tt.acts)
		}
	}
	if _, ok := c.NextEvent(); ok {
		t.Fatal("after the end: got an event, want none")
	}
	if got := c.Now(); !got.Equal(epoch.Add(time.Hour)) {
		t.Fatalf("clock: got %v, want %v", got, epoch.Add(time.Hour))
	}
}

// TestDepth: conservative backfilling with one reservation behaves like
// aggressive backfilling.
func TestDepth(t *testing.T) {
	run := func(p Policy) string {
		c, _ := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 8000, Memory: 32 * model.GiB}}}, p)
		sub := func(id string, cores int64, d time.Duration) {
			if _, err := c.Submit(Lease{ID: id, Kind: BestEffort, Members: []Request{member(cores, model.GiB)}, Duration: d}, epoch); err != nil {
				t.Fatal(err)
			}
		}
		sub("be1", 4, 2*time.Hour)
		c.Advance(epoch)
		sub("be2", 6, 2*time.Hour)
		sub("be3", 8, time.Hour)
		sub("be4", 2, 5*time.Hour)
		var out []string
		for _, a := range c.Advance(epoch) {
			out = append(out, string(a.Kind)+" "+a.Lease)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name string
		pol  Policy
		want string
	}{
		{"aggressive", Policy{Backfill: BackfillAggressive}, "start be4"},
		{"conservative", Policy{Backfill: BackfillConservative}, ""},
		{"conservative depth 1", Policy{Backfill: BackfillConservative, Depth: 1}, "start be4"},
		{"none", Policy{Backfill: BackfillNone}, ""},
	}
	for _, tt := range tests {
		if got := run(tt.pol); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestRefusalFields(t *testing.T) {
	c, _ := New([]Host{
		{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}},
		{Name: "h2", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}},
	}, DefaultPolicy())
	if _, err := c.Submit(Lease{ID: "ar1", Kind: Reservation, Members: []Request{member(4, model.GiB), member(4, model.GiB)},
		Start: epoch.Add(time.Hour), Duration: time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	_, err := c.Submit(Lease{ID: "ar2", Kind: Reservation, Members: []Request{member(2, model.GiB)},
		Start: epoch.Add(90 * time.Minute), Duration: time.Hour}, epoch)
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a *Refusal", err)
	}
	tests := []struct {
		field     string
		got, want any
	}{
		{"reason", r.Reason, ReasonCapacity},
		{"resource", r.Resource, "cpu"},
		{"requested", r.Requested, 2000.0},
		{"free", r.Free, 0.0},
		{"host", r.Host, "h1"},
		{"blocking", strings.Join(r.Blocking, ","), "ar1"},
		{"from", r.From, epoch.Add(90 * time.Minute)},
		{"to", r.To, epoch.Add(150 * time.Minute)},
		{"earliest fit", r.EarliestFit, epoch.Add(2 * time.Hour)},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.field, tt.got, tt.want)
		}
	}
	// A refused lease is not kept: refusals in a loop must not grow the
	// calendar (issue 7, item 9).
	if v, ok := c.Get("ar2"); ok {
		t.Errorf("view: got %+v, want no lease kept for a refusal", v)
	}
}

func TestGanttEmpty(t *testing.T) {
	c, _ := New(oneHost(), DefaultPolicy())
	if got := c.Gantt(epoch, epoch, 10); got != "" {
		t.Errorf("empty window: got %q, want empty", got)
	}
	got := c.Gantt(epoch, epoch.Add(time.Hour), 4)
	if !strings.Contains(got, "h1 |....|") || strings.Contains(got, "legend") {
		t.Errorf("idle host: got %q, want one idle row and no legend", got)
	}
}

// TestBandwidth: bandwidth is counted like the other resources.
func TestBandwidth(t *testing.T) {
	c, _ := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Bandwidth: model.GiB}}}, DefaultPolicy())
	bw := func(id string, b model.ByteSize) error {
		_, err := c.Submit(Lease{ID: id, Kind: Immediate, Duration: time.Hour,
			Members: []Request{{Resources: model.Resources{MilliCPU: 1000, Memory: model.GiB, Bandwidth: b}}}}, epoch)
		return err
	}
	tests := []struct {
		id     string
		bw     model.ByteSize
		reason Reason
	}{
		{"a", 600 * model.MiB, ""},
		{"b", 600 * model.MiB, ReasonCapacity},
		{"c", 2 * model.GiB, ReasonTooLarge},
		{"d", 400 * model.MiB, ""},
	}
	for _, tt := range tests {
		err := bw(tt.id, tt.bw)
		var r *Refusal
		got := Reason("")
		if errors.As(err, &r) {
			got = r.Reason
			if r.Resource != "bandwidth" {
				t.Errorf("%s: got short resource %q, want bandwidth", tt.id, r.Resource)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if got != tt.reason {
			t.Errorf("%s: got %q, want %q (%v)", tt.id, got, tt.reason, err)
		}
	}
}

// A project's chart shows other projects' holds as '*', without their
// names, and its own as letters.
func TestMaskHidesOtherProjects(t *testing.T) {
	c, err := New([]Host{{Name: "n1", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	half := []Request{{Resources: model.Resources{MilliCPU: 1000, Memory: model.GiB}}}
	for _, l := range []Lease{
		{ID: "mine/x", Project: "mine", Kind: Immediate, Members: half, Duration: 2 * time.Hour},
		{ID: "other/secret", Project: "other", Kind: Reservation, Start: epoch.Add(time.Hour), Members: half, Duration: time.Hour},
	} {
		if _, err := c.Submit(l, epoch); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(epoch)
	rows := Mask(c.GanttData(epoch, epoch.Add(4*time.Hour)), "mine")
	got := RenderGantt(rows, epoch, epoch.Add(4*time.Hour), 4)
	if strings.Contains(got, "secret") || strings.Contains(got, "other") && !strings.Contains(got, "*: other projects") {
		t.Fatalf("another project's lease shows:\n%s", got)
	}
	if !strings.Contains(got, "n1 |aa..|") || !strings.Contains(got, "|.*..|") || !strings.Contains(got, "a=mine/x") {
		t.Fatalf("got\n%s", got)
	}
}
