package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/sim"
)

const simTestdata = "../../internal/sim/trace/testdata"

// runSim runs vgrid sim with args and returns its stdout and stderr.
func runSim(t *testing.T, ctx context.Context, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"sim"}, args...))
	err := root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

// TestSimSite: the trace's <site> is the grid unless a flag says
// otherwise, and the output says which.
func TestSimSite(t *testing.T) {
	site := filepath.Join(simTestdata, "sample-site.lwf")
	plain := filepath.Join(simTestdata, "sample-uncommented.lwf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--trace", site}, "site: from sample-site.lwf: 4 hosts of 1 CPU, 1024 MiB\n"},
		{[]string{"--trace", site, "--hosts", "8"}, "site: from sample-site.lwf, --hosts from flags: 8 hosts of 1 CPU, 1024 MiB\n"},
		{[]string{"--trace", site, "--host-memory", "2Gi", "--host-cpus", "2"}, "site: from sample-site.lwf, --host-cpus --host-memory from flags: 4 hosts of 2 CPU, 2048 MiB\n"},
		{[]string{"--trace", plain}, "site: flags: 144 hosts of 1 CPU, 1024 MiB\n"},
		{[]string{"--trace", plain, "--hosts", "4"}, "site: flags: 4 hosts of 1 CPU, 1024 MiB\n"},
	} {
		out, _, err := runSim(t, context.Background(), c.args...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("sim %v: %v; want %q in\n%s", c.args, err, c.want, out)
		}
	}
	// The site's grid is the one simulated: on Haizea's 4 hosts the
	// reservation suspends the best-effort lease (on 144 it would not).
	out, _, err := runSim(t, context.Background(), "--trace", site, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		LeaseCount  int `json:"lease_count"`
		Suspensions int `json:"suspensions"`
		Site        struct {
			Source string `json:"source"`
			Hosts  int    `json:"hosts"`
		} `json:"site"`
		Leases []map[string]any `json:"leases"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.LeaseCount != 2 || got.Suspensions != 1 || got.Site.Source != "sample-site.lwf" || got.Site.Hosts != 4 || len(got.Leases) != 2 {
		t.Errorf("-o json: %+v", got)
	}
	if len(got.Leases) == 2 && (got.Leases[0]["id"] != "1" || got.Leases[0]["end_s"] != 5400.0 || got.Leases[0]["suspended_s"] != 1800.0 ||
		got.Leases[1]["start"] != "2000-01-01T00:30:00Z" || got.Leases[1]["state"] != "done") {
		t.Errorf("-o json leases: %v", got.Leases)
	}
	// A bad site is an error naming the element and attribute.
	bad := filepath.Join(t.TempDir(), "bad.lwf")
	data, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, bytes.Replace(data, []byte(`numnodes="4"`), []byte(`numnodes="four"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runSim(t, context.Background(), "--trace", bad); err == nil || !strings.Contains(err.Error(), `site: <nodes>: node-set 1: numnodes: "four"`) {
		t.Errorf("bad site: %v", err)
	}
}

// TestSimLeasesFile: --leases writes CSV or JSON by extension, and
// refuses any other naming the flag.
func TestSimLeasesFile(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(simTestdata, "sample-site.lwf")
	csvPath, jsonPath := filepath.Join(dir, "l.csv"), filepath.Join(dir, "l.JSON")
	for _, p := range []string{csvPath, jsonPath} {
		out, _, err := runSim(t, context.Background(), "--trace", site, "--leases", p)
		if err != nil || !strings.Contains(out, "leases: "+p+" (2 rows)") {
			t.Fatalf("--leases %s: %v\n%s", p, err, out)
		}
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("CSV: %d rows, %v", len(rows), err)
	}
	col := map[string]int{}
	for i, c := range rows[0] {
		col[c] = i
	}
	// Haizea's sample: the best-effort lease runs 00:00–00:30 and
	// 01:00–01:30; the reservation holds all four hosts 00:30–01:00.
	for _, c := range []struct {
		row         int
		field, want string
	}{
		{1, "id", "1"}, {1, "kind", "best-effort"}, {1, "start_s", "0"}, {1, "end", "2000-01-01T01:30:00Z"},
		{1, "suspensions", "1"}, {1, "resumes", "1"}, {1, "suspended_s", "1800"}, {1, "hosts", "h001"}, {1, "state", "done"},
		{2, "id", "2"}, {2, "kind", "reservation"}, {2, "requested_start_s", "1800"}, {2, "start_s", "1800"}, {2, "end_s", "3600"},
	} {
		if got := rows[c.row][col[c.field]]; got != c.want {
			t.Errorf("CSV row %d %s = %q, want %q", c.row, c.field, got, c.want)
		}
	}
	if n := len(strings.Fields(rows[2][col["hosts"]])); n != 4 {
		t.Errorf("reservation on %d hosts, want 4", n)
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(data, &objs); err != nil || len(objs) != 2 || objs[0]["end_s"] != 5400.0 {
		t.Errorf("JSON file: %v %v", err, objs)
	}
	for _, p := range []string{"l.txt", "leases"} {
		_, _, err := runSim(t, context.Background(), "--trace", site, "--leases", filepath.Join(dir, p))
		if err == nil || !strings.Contains(err.Error(), "--leases") || !strings.Contains(err.Error(), "want .csv or .json") {
			t.Errorf("--leases %s: %v", p, err)
		}
	}
}

// TestSimInterrupted: a run whose context a SIGINT (or SIGTERM) cancelled
// stops, says where, and exits 130 (143).
func TestSimInterrupted(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		want exitStatus
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(signalCause{c.sig})
		_, errOut, err := runSim(t, ctx, "--trace", filepath.Join(simTestdata, "sample-site.lwf"))
		var st exitStatus
		if !errors.As(err, &st) || st != c.want {
			t.Errorf("%v: error %v, want exit status %d", c.sig, err, c.want)
		}
		if !strings.Contains(errOut, "interrupted at virtual time 2000-01-01T00:00:00Z (+0s) after 0 of 2 leases") {
			t.Errorf("%v: stderr %q", c.sig, errOut)
		}
	}
}

// TestSimProgress: the bar appears after a second, at most every 100 ms,
// and is erased.
func TestSimProgress(t *testing.T) {
	var b bytes.Buffer
	t0 := time.Unix(1000, 0)
	now := t0
	p := &simProgress{w: &b, start: t0, now: func() time.Time { return now }}
	pr := sim.Progress{Submitted: 50, Total: 100, Now: sim.Epoch.Add(90 * time.Minute)}
	p.update(pr)
	now = t0.Add(900 * time.Millisecond)
	p.update(pr)
	if b.Len() != 0 {
		t.Fatalf("drawn before a second: %q", b.String())
	}
	now = t0.Add(1100 * time.Millisecond)
	p.update(pr)
	want := "\r[###############...............] 50/100 leases submitted, virtual time 2000-01-01T01:30:00Z (+1h30m0s)\x1b[K"
	if b.String() != want {
		t.Fatalf("bar %q, want %q", b.String(), want)
	}
	now = now.Add(50 * time.Millisecond)
	p.update(pr)
	if b.String() != want {
		t.Errorf("drawn again within 100 ms")
	}
	now = now.Add(60 * time.Millisecond)
	p.update(pr)
	if strings.Count(b.String(), "\r[") != 2 {
		t.Errorf("not drawn again after 110 ms: %q", b.String())
	}
	b.Reset()
	p.clear()
	p.clear()
	if b.String() != "\r\x1b[K" {
		t.Errorf("clear wrote %q", b.String())
	}
	var none *simProgress
	none.clear() // no bar (not a terminal): nothing to do
	if newSimProgress(&b) != nil {
		t.Error("a bar on a buffer")
	}
}

// TestSimRuntimeAsRequested: an SWF trace without requested times (-1 in
// field 9) runs nothing, says why, and runs with --runtime-as-requested.
func TestSimRuntimeAsRequested(t *testing.T) {
	path := filepath.Join(t.TempDir(), "synthetic.swf")
	// job submit wait run procs cpu mem reqprocs reqtime reqmem status ...
	swf := "; synthetic, no requested times\n" +
		"1 0 0 600 2 -1 -1 2 -1 -1 1 1 1 1 1 -1 -1 -1\n" +
		"2 60 0 1200 1 -1 -1 1 -1 -1 1 1 1 1 1 -1 -1 -1\n"
	if err := os.WriteFile(path, []byte(swf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, err := runSim(t, context.Background(), "--trace", path, "--hosts", "4")
	if err != nil || !strings.Contains(out, "0 leases") || !strings.Contains(errs, "needs --runtime-as-requested") {
		t.Fatalf("without the flag: %v\nstdout:\n%s\nstderr:\n%s", err, out, errs)
	}
	out, errs, err = runSim(t, context.Background(), "--trace", path, "--hosts", "4", "--runtime-as-requested")
	if err != nil || !strings.Contains(out, "2 leases") || strings.Contains(errs, "warning") {
		t.Fatalf("with the flag: %v\nstdout:\n%s\nstderr:\n%s", err, out, errs)
	}
}

// TestSimPolicyFlags: the policy flags' bad values are refused, naming
// the flag.
func TestSimPolicyFlags(t *testing.T) {
	trace := filepath.Join(simTestdata, "sample-site.lwf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--min-run", "-1m"}, "--min-run -1m0s"},
		{[]string{"--link-bandwidth", "fast"}, "--link-bandwidth"},
		{[]string{"--link-bandwidth", "-1Mi"}, "--link-bandwidth: -1Mi is negative"},
		{[]string{"--multicast"}, "--multicast needs --link-bandwidth"},
		{[]string{"--image-cache", "1Gi"}, "--image-cache needs --link-bandwidth"},
		{[]string{"--link-bandwidth", "1Gi", "--image-cache", "lots"}, "--image-cache"},
		{[]string{"--gap-min-run", "-1s"}, "--gap-min-run -1s"},
		{[]string{"--shutdown-time", "-1s"}, "--shutdown-time -1s"},
		{[]string{"--shutdown-time", "2h"}, "--shutdown-time 2h0m0s"},
	} {
		_, _, err := runSim(t, context.Background(), append([]string{"--trace", trace}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("sim %v: got %v, want an error with %q", c.args, err, c.want)
		}
	}
	for _, args := range [][]string{{"--min-run", "10m"}, {"--link-bandwidth", "100Mi", "--multicast", "--image-cache", "4Gi"}, {"--shutdown-time", "30s"}} {
		if _, _, err := runSim(t, context.Background(), append([]string{"--trace", trace}, args...)...); err != nil {
			t.Errorf("sim %v: %v", args, err)
		}
	}
}

// TestSimSuspendModes: --suspend takes true, false or serial-only (bare
// --suspend is true) and says which in its first line; --exclusion local
// or global; anything else is refused naming the flag. On Haizea's sample
// the best-effort lease (one member) is suspended under serial-only as
// under true.
func TestSimSuspendModes(t *testing.T) {
	site := filepath.Join(simTestdata, "sample-site.lwf")
	for _, tc := range []struct {
		args          []string
		want, preempt string
	}{
		{[]string{"--suspend"}, "suspension true", "(1 suspended, 0 requeued)"},
		{[]string{"--suspend=false"}, "suspension false", "(0 suspended, 1 requeued)"},
		{[]string{"--suspend=serial-only", "--exclusion", "global"}, "suspension serial-only", "(1 suspended, 0 requeued)"},
	} {
		out, _, err := runSim(t, context.Background(), append([]string{"--trace", site}, tc.args...)...)
		if err != nil || !strings.Contains(out, tc.want) || !strings.Contains(out, tc.preempt) {
			t.Errorf("%v: %v; want %q and %q in\n%s", tc.args, err, tc.want, tc.preempt, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--suspend=maybe"}, `invalid argument "maybe" for "--suspend" flag: want true, false or serial-only`},
		{[]string{"--exclusion", "shared"}, `--exclusion "shared": want local or global`},
	} {
		if _, _, err := runSim(t, context.Background(), append([]string{"--trace", site}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
