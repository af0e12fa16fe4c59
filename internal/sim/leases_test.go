package sim

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/sim/trace"
)

// leaseScenario is a small hand-written workload on two hosts of 1 CPU
// and 1 GiB, images staged at 10 MiB/s:
//
//   - be1, best effort, starts at once on h001 and runs 1 h;
//   - ar1, a reservation of both hosts for 00:30–01:00 with a 600 MiB
//     image (60 s of staging ahead, 00:29–00:30), suspends be1 at 00:30;
//     be1 resumes at 01:00 and ends at 01:30 (30 min suspended);
//   - ar2, a reservation of one host at 00:40, is refused (ar1 holds both);
//   - be2, two nodes, cannot start before ar1 and is withdrawn 10 min after
//     its submission (cancel-after);
//   - dl1, a deadline lease submitted at 01:40 (deadline 03:00), starts at
//     once on the free h001 and ends at 02:10.
func leaseScenario() ([]trace.Lease, Config) {
	m := time.Minute
	leases := []trace.Lease{
		{ID: "be1", Kind: model.LeaseBestEffort, Duration: time.Hour, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true, Project: "p"},
		{ID: "ar1", Submit: 10 * m, Kind: model.LeaseReservation, Start: 30 * m, Duration: 30 * m, Nodes: 2, CPUs: 1, MemoryMiB: 1024, Image: "img", ImageSizeMiB: 600},
		{ID: "ar2", Submit: 20 * m, Kind: model.LeaseReservation, Start: 40 * m, Duration: 10 * m, Nodes: 1, CPUs: 1, MemoryMiB: 512},
		{ID: "be2", Submit: 25 * m, Kind: model.LeaseBestEffort, Duration: time.Hour, Nodes: 2, CPUs: 1, MemoryMiB: 512, Preemptible: true, CancelAfter: 10 * m},
		{ID: "dl1", Submit: 100 * m, Kind: model.LeaseDeadline, Deadline: 3 * time.Hour, Duration: 30 * m, Nodes: 1, CPUs: 1, MemoryMiB: 512},
		{ID: "bad", Submit: 100 * m, Kind: model.LeaseBestEffort, Duration: time.Hour, Nodes: 0, CPUs: 1},
	}
	cfg := Config{Hosts: 2, HostCPUs: 1, HostMemory: model.GiB, Policy: calendar.DefaultPolicy(), StageRate: 10 * int64(model.MiB)}
	return leases, cfg
}

func TestLeaseResults(t *testing.T) {
	leases, cfg := leaseScenario()
	res, err := Run(leases, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Leases) != len(leases) {
		t.Fatalf("%d lease results, want %d", len(res.Leases), len(leases))
	}
	m := time.Minute
	d := func(x time.Duration) *time.Duration { return &x }
	type want struct {
		state                          string
		reason                         string // a substring of it ("" : empty)
		start, end, reqStart, deadline *time.Duration
		hosts                          []string // sorted
		susp, resumes                  int
		suspended                      time.Duration
		imageFrom, imageTo             *time.Duration
	}
	wants := map[string]want{
		"be1": {state: StateDone, start: d(0), end: d(90 * m), hosts: []string{"h001"}, susp: 1, resumes: 1, suspended: 30 * m},
		"ar1": {state: StateDone, start: d(30 * m), end: d(60 * m), reqStart: d(30 * m), hosts: []string{"h001", "h002"},
			imageFrom: d(29 * m), imageTo: d(30 * m)},
		"ar2": {state: StateRejected, reason: "lease ar2 refused", reqStart: d(40 * m)},
		"be2": {state: StateCancelled, reason: "withdrawn: not started 10m0s"},
		"dl1": {state: StateDone, start: d(100 * m), end: d(130 * m), deadline: d(3 * time.Hour), hosts: []string{"h001"}},
		"bad": {state: StateRejected, reason: "nodes 0: want 1 or more"},
	}
	eq := func(a, b *time.Duration) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	str := func(p *time.Duration) string {
		if p == nil {
			return "none"
		}
		return p.String()
	}
	for i, r := range res.Leases {
		if r.ID != leases[i].ID {
			t.Errorf("result %d is %s, want %s (trace order)", i, r.ID, leases[i].ID)
			continue
		}
		w := wants[r.ID]
		if r.State != w.state || (w.reason == "") != (r.Reason == "") || !strings.Contains(r.Reason, w.reason) {
			t.Errorf("%s: state %q reason %q, want %q with %q", r.ID, r.State, r.Reason, w.state, w.reason)
		}
		for _, c := range []struct {
			what      string
			got, want *time.Duration
		}{{"start", r.Start, w.start}, {"end", r.End, w.end}, {"requested start", r.RequestedStart, w.reqStart},
			{"deadline", r.Deadline, w.deadline}, {"image transfer start", r.ImageFrom, w.imageFrom}, {"image transfer end", r.ImageTo, w.imageTo}} {
			if !eq(c.got, c.want) {
				t.Errorf("%s: %s %s, want %s", r.ID, c.what, str(c.got), str(c.want))
			}
		}
		hosts := slices.Sorted(slices.Values(r.Hosts))
		if !slices.Equal(hosts, w.hosts) {
			t.Errorf("%s: hosts %v, want %v", r.ID, r.Hosts, w.hosts)
		}
		if r.Suspensions != w.susp || r.Resumes != w.resumes || r.Suspended != w.suspended {
			t.Errorf("%s: %d suspensions, %d resumes, %s suspended; want %d, %d, %s", r.ID, r.Suspensions, r.Resumes, r.Suspended, w.susp, w.resumes, w.suspended)
		}
	}
}

// TestLeaseOutput checks the CSV and JSON forms of the same results: the
// header, a row per lease by ID, both clocks of a time, empty cells and
// nulls for what does not apply.
func TestLeaseOutput(t *testing.T) {
	leases, cfg := leaseScenario()
	res, err := Run(leases, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var cb bytes.Buffer
	if err := WriteLeasesCSV(&cb, res.Leases); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[0], LeaseColumns) || len(rows) != len(leases)+1 {
		t.Fatalf("CSV header %v and %d rows", rows[0], len(rows))
	}
	var jb bytes.Buffer
	if err := WriteLeasesJSON(&jb, res.Leases); err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(jb.Bytes(), &objs); err != nil {
		t.Fatalf("JSON: %v\n%s", err, jb.String())
	}
	col := map[string]int{}
	for i, c := range LeaseColumns {
		col[c] = i
	}
	byID := map[string]int{}
	for i, r := range rows[1:] {
		byID[r[0]] = i
	}
	cases := []struct {
		id, field string
		csv       string
		json      any
	}{
		{"be1", "start", "2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z"},
		{"be1", "end_s", "5400", 5400.0},
		{"be1", "end", "2000-01-01T01:30:00Z", "2000-01-01T01:30:00Z"},
		{"be1", "suspended_s", "1800", 1800.0},
		{"be1", "requested_start", "", nil},
		{"be1", "state", "done", "done"},
		{"ar1", "image_transfer_start", "2000-01-01T00:29:00Z", "2000-01-01T00:29:00Z"},
		{"ar1", "image_transfer_end_s", "1800", 1800.0},
		{"ar1", "requested_start_s", "1800", 1800.0},
		{"ar1", "submitted_s", "600", 600.0},
		{"ar2", "state", "rejected", "rejected"},
		{"ar2", "start", "", nil},
		{"be2", "state", "cancelled", "cancelled"},
		{"dl1", "deadline", "2000-01-01T03:00:00Z", "2000-01-01T03:00:00Z"},
		{"dl1", "hosts", "h001", []any{"h001"}},
		{"ar2", "hosts", "", []any{}},
	}
	for _, c := range cases {
		i, ok := byID[c.id]
		if !ok {
			t.Errorf("no CSV row for %s", c.id)
			continue
		}
		if got := rows[i+1][col[c.field]]; got != c.csv {
			t.Errorf("CSV %s %s = %q, want %q", c.id, c.field, got, c.csv)
		}
		if objs[i]["id"] != c.id {
			t.Fatalf("JSON object %d is %v, want %s", i, objs[i]["id"], c.id)
		}
		got, ok := objs[i][c.field]
		if !ok {
			t.Errorf("JSON %s: no %s", c.id, c.field)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(c.json)
		if string(gj) != string(wj) {
			t.Errorf("JSON %s %s = %s, want %s", c.id, c.field, gj, wj)
		}
	}
	// The same input gives the same bytes.
	res2, _ := Run(leases, cfg)
	var jb2 bytes.Buffer
	WriteLeasesJSON(&jb2, res2.Leases)
	if !bytes.Equal(jb.Bytes(), jb2.Bytes()) {
		t.Error("two runs of the same input wrote different JSON")
	}
}

// TestRunCancelled: a run whose context is cancelled while it runs
// stops at once with an *Interrupted wrapping context.Canceled, saying
// how far it came.
func TestRunCancelled(t *testing.T) {
	// Many short best-effort leases on one host: a long run.
	const n = 100000
	leases := make([]trace.Lease, n)
	for i := range leases {
		leases[i] = trace.Lease{ID: "l" + strconv.Itoa(i), Submit: time.Duration(i) * time.Second, Kind: model.LeaseBestEffort,
			Duration: time.Minute, Nodes: 1, CPUs: 1, MemoryMiB: 64, Preemptible: true}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := Config{Hosts: 1, HostCPUs: 1, HostMemory: model.GiB, Policy: calendar.DefaultPolicy(), Context: ctx}
	var calls int
	var last Progress
	cfg.Progress = func(p Progress) {
		calls++
		if p.Submitted < last.Submitted || p.Now.Before(last.Now) || p.Total != n {
			t.Errorf("progress went back or lost its total: %+v after %+v", p, last)
		}
		last = p
		if p.Submitted >= 2000 {
			cancel()
		}
	}
	t0 := time.Now()
	_, err := Run(leases, cfg)
	took := time.Since(t0)
	var in *Interrupted
	if !errors.As(err, &in) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want an *Interrupted wrapping context.Canceled", err)
	}
	// It stops at the step after the one that cancelled: at most one
	// more submission.
	if calls == 0 || in.Submitted < last.Submitted || in.Submitted > last.Submitted+1 || in.Total != n || in.At.Before(last.Now) {
		t.Errorf("interrupted %+v after %d progress calls (last %+v)", in, calls, last)
	}
	if took > 10*time.Second {
		t.Errorf("the cancelled run took %s", took)
	}
	if !strings.Contains(err.Error(), "interrupted at virtual time 2000-01-0") {
		t.Errorf("error %q does not say the virtual time", err)
	}
}
