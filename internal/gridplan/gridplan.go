package gridplan

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// Part is one cluster or single workspace of a grid, as its lease.
type Part struct {
	Name string
	// Kind is "cluster" or "workspace".
	Kind string
	// Lease is the part's lease. For a Linked part, Kind and Start are
	// set by the search (a reservation at the window's start); otherwise
	// the lease is submitted as it is.
	Lease  calendar.Lease
	Linked bool
	// Images names each member's image (for the staging report).
	Images []string
}

// Volume is a volume the grid makes: placed on a storage host of the
// calendar before the parts are submitted.
type Volume struct {
	Name    string // the volume's name in its project
	Project string
	Size    model.ByteSize
	// Host, when set, is the host it must go on (a snapshot is made on
	// its source's host).
	Host string
}

// Input is a grid to plan.
type Input struct {
	Parts   []Part
	Volumes []Volume
	// NotBefore is the earliest start asked for (zero: now).
	NotBefore time.Time
	// Exact refuses any window but NotBefore (a reservation the user
	// dated and wants at that time only).
	Exact bool
	// Lead is added to the earliest start at which the images can be
	// staged and the guests booted, so that the plan can still be
	// carried out a little later (default 10 s).
	Lead time.Duration
	// MaxTries bounds the search (default 200 windows).
	MaxTries int
}

// Result is a plan: the window, each part's admission, the new volumes'
// hosts, what happens to other leases; or what is short.
type Result struct {
	Fits       bool
	Start, End time.Time
	Tries      int
	Admissions map[string]calendar.Admission // by part name
	Records    map[string]model.LeaseRecord  // by part name: the hold (stage times)
	Volumes    map[string]string             // new volume → storage host
	Effects    []Effect
	// Shortfall is set when the grid can never fit (Fits false).
	Shortfall *Shortfall
	// After is the calendar with the grid admitted (for a chart); nil
	// when it does not fit.
	After *calendar.Calendar
}

// Effect is what the grid does to an existing lease.
type Effect struct {
	Lease   string
	Project string
	// Action is suspend, migrate, requeue or delay.
	Action string
	At     time.Time
	By     time.Duration
}

// Shortfall says why a grid never fits.
type Shortfall struct {
	Part      string
	Resource  string
	Requested float64
	Free      float64
	Host      string
	Message   string
}

// Evaluate plans in on a clone of base at now: the earliest window from
// in.NotBefore (or now) in which every linked part is admitted as a
// reservation at one start, the other parts as they are, the new volumes
// placed first. base is not changed.
func Evaluate(base *calendar.Calendar, in Input, now time.Time) (Result, error) {
	if len(in.Parts) == 0 {
		return Result{}, errors.New("a grid needs at least one cluster or workspace")
	}
	lead := in.Lead
	if lead == 0 {
		lead = 10 * time.Second
	}
	tries := in.MaxTries
	if tries <= 0 {
		tries = 200
	}
	S := in.NotBefore
	if S.IsZero() || S.Before(now.Add(lead)) && !in.Exact {
		S = now.Add(lead)
	}
	S = ceilSecond(S)
	before, err := base.Clone()
	if err != nil {
		return Result{}, err
	}
	before.Advance(now)
	res := Result{}
	for res.Tries < tries {
		res.Tries++
		c, err := base.Clone()
		if err != nil {
			return Result{}, err
		}
		c.Advance(now)
		vols, short := placeVolumes(c, in.Volumes, now)
		if short != nil {
			res.Shortfall = short
			return res, nil
		}
		adms := map[string]calendar.Admission{}
		next, failed := time.Time{}, (*calendar.Refusal)(nil)
		failedPart := ""
		for _, p := range in.Parts {
			l := p.Lease
			l.Members = append([]calendar.Request(nil), l.Members...)
			if p.Linked {
				l.Kind, l.Start, l.Deadline = calendar.Reservation, S, time.Time{}
			}
			adm, err := c.Submit(l, now)
			var rf *calendar.Refusal
			if errors.As(err, &rf) {
				failed, failedPart = rf, p.Name
				// A linked part moves the window to its earliest fit (a
				// dated exact window only when it is too soon to stage).
				if p.Linked && !rf.EarliestFit.IsZero() && rf.EarliestFit.After(S) && (!in.Exact || rf.Reason == calendar.ReasonTooSoon) {
					next = rf.EarliestFit
					if rf.Reason == calendar.ReasonTooSoon {
						next = next.Add(lead)
					}
				}
				break
			}
			if err != nil {
				return Result{}, fmt.Errorf("part %s: %w", p.Name, err)
			}
			adms[p.Name] = adm
		}
		if failed == nil {
			c.Advance(now)
			res.Fits, res.Admissions, res.Volumes, res.After = true, adms, vols, c
			res.Records = map[string]model.LeaseRecord{}
			res.Start, res.End = time.Time{}, time.Time{}
			for _, p := range in.Parts {
				a := adms[p.Name]
				if r, ok := c.Record(p.Lease.ID); ok {
					res.Records[p.Name] = r
				}
				if res.Start.IsZero() || a.Start.Before(res.Start) {
					res.Start = a.Start
				}
				if a.End.After(res.End) {
					res.End = a.End
				}
			}
			res.Effects = effects(before, c, in, adms)
			return res, nil
		}
		if next.IsZero() {
			res.Shortfall = shortfallOf(failedPart, failed)
			return res, nil
		}
		S = ceilSecond(next)
	}
	res.Shortfall = &Shortfall{Message: fmt.Sprintf("no window found in %d tries (the last tried began %s)", tries, S.UTC().Format(time.RFC3339))}
	return res, nil
}

func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// placeVolumes places the new volumes on c, largest first (as a user
// would create them one by one, but the big ones get the room).
func placeVolumes(c *calendar.Calendar, vs []Volume, now time.Time) (map[string]string, *Shortfall) {
	out := map[string]string{}
	order := append([]Volume(nil), vs...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Size > order[j].Size })
	for _, v := range order {
		h, err := c.PlaceVolume(calendar.Volume{Name: v.Project + "/" + v.Name, Project: v.Project, Size: v.Size}, v.Host, now)
		if err != nil {
			var vr *calendar.VolumeRefusal
			sf := &Shortfall{Part: "volume " + v.Name, Resource: "disk", Requested: float64(v.Size), Message: fmt.Sprintf("volume %s (%s): %v", v.Name, v.Size.Human(), err)}
			if errors.As(err, &vr) {
				sf.Host = vr.Host
				sf.Free = float64(vr.Free)
			}
			return nil, sf
		}
		out[v.Name] = h
	}
	return out, nil
}

func shortfallOf(part string, rf *calendar.Refusal) *Shortfall {
	return &Shortfall{Part: part, Resource: rf.Resource, Requested: rf.Requested, Free: rf.Free, Host: rf.Host,
		Message: fmt.Sprintf("%s: %s", part, rf.Error())}
}

// effects compares every lease that was there before the grid with
// itself after: the victims of the admissions, and the leases that start
// or end later.
func effects(before, after *calendar.Calendar, in Input, adms map[string]calendar.Admission) []Effect {
	var out []Effect
	seen := map[string]bool{}
	for _, p := range in.Parts {
		for _, v := range adms[p.Name].Victims {
			e := Effect{Lease: v.Lease, Action: string(v.Kind), At: v.At}
			if bv, ok := before.Get(v.Lease); ok {
				e.Project = bv.Project
				if av, ok := after.Get(v.Lease); ok && av.End.After(bv.End) && !bv.End.IsZero() {
					e.By = av.End.Sub(bv.End)
				}
			}
			if !seen[v.Lease] {
				seen[v.Lease] = true
				out = append(out, e)
			}
		}
	}
	for _, bv := range before.Leases() {
		if seen[bv.ID] || bv.State.Over() {
			continue
		}
		av, ok := after.Get(bv.ID)
		if !ok {
			continue
		}
		var by time.Duration
		switch {
		case !bv.Start.IsZero() && av.Start.After(bv.Start):
			by = av.Start.Sub(bv.Start)
		case !bv.End.IsZero() && av.End.After(bv.End):
			by = av.End.Sub(bv.End)
		}
		if by > 0 {
			out = append(out, Effect{Lease: bv.ID, Project: bv.Project, Action: "delay", At: av.Start, By: by})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Lease < out[j].Lease })
	return out
}
