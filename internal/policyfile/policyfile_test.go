package policyfile

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

const fullPolicy = `
backfill: conservative
placement: spread
suspend: false
exclusion: global
migrate: true
gaps: false
gap_min_run: 10m
min_run: 15m
shutdown_time: 30s
fair_share: {half_life: 24h, weights: {physics: 2}}
quotas:
  biology: {cpu: 4, memory: 8Gi, workspaces: 3, core_hours: 100}
overcommit: {cpu: 4, memory: 1}
link: {bandwidth: 100Mi, multicast: true, cache: 20Gi}
`

func checkFull(t *testing.T, p *calendar.Policy) {
	t.Helper()
	if p.Backfill != calendar.BackfillConservative || p.Placement != calendar.Spread || p.Suspend || p.SerialOnly || p.Exclusion != calendar.ExclusionGlobal || !p.Migrate || p.Gaps || p.GapMinRun != 10*time.Minute || p.MinRun != 15*time.Minute || p.ShutdownTime != 30*time.Second {
		t.Errorf("got %+v", p)
	}
	if p.FairShare == nil || p.FairShare.HalfLife != 24*time.Hour || p.FairShare.Weights["physics"] != 2 {
		t.Errorf("fair share %+v", p.FairShare)
	}
	if q := p.Quotas["biology"]; q.MilliCPU != 4000 || q.Memory != 8*model.GiB || q.Workspaces != 3 || q.CoreHours != 100 {
		t.Errorf("quota %+v", q)
	}
	if o := p.Overcommit; o.CPU != 4 || o.Memory != 1 || o.Disk != 0 || o.Bandwidth != 0 {
		t.Errorf("overcommit %+v", o)
	}
	if l := p.Link; l.Bandwidth != 100*int64(model.MiB) || !l.Multicast || l.Cache != 20*int64(model.GiB) || l.Measured {
		t.Errorf("link %+v", l)
	}
}

func TestParse(t *testing.T) {
	p, err := Parse([]byte(fullPolicy))
	if err != nil {
		t.Fatal(err)
	}
	checkFull(t, p)

	// The same in JSON, and in UTF-16 with a byte order mark.
	p, err = Parse([]byte(`{"backfill": "conservative", "placement": "spread", "suspend": false, "exclusion": "global", "migrate": true,
		"gaps": false, "gap_min_run": "10m", "min_run": "15m", "shutdown_time": "30s", "fair_share": {"half_life": "24h", "weights": {"physics": 2}},
		"quotas": {"biology": {"cpu": 4, "memory": "8Gi", "workspaces": 3, "core_hours": 100}},
		"overcommit": {"cpu": 4, "memory": 1}, "link": {"bandwidth": "100Mi", "multicast": true, "cache": "20Gi"}}`))
	if err != nil {
		t.Fatal(err)
	}
	checkFull(t, p)
	for _, big := range []bool{false, true} {
		u := []byte{0xff, 0xfe}
		if big {
			u = []byte{0xfe, 0xff}
		}
		for _, c := range utf16.Encode([]rune(fullPolicy)) {
			if big {
				u = append(u, byte(c>>8), byte(c))
			} else {
				u = append(u, byte(c), byte(c>>8))
			}
		}
		if p, err = Parse(u); err != nil {
			t.Fatalf("UTF-16 (big endian %v): %v", big, err)
		}
		checkFull(t, p)
	}
}

func TestParseFairShareBasis(t *testing.T) {
	for src, want := range map[string]calendar.Basis{
		"fair_share: {basis: used}\n":     calendar.BasisUsed,
		"fair_share: {basis: reserved}\n": calendar.BasisReserved,
		"fair_share: {half_life: 1h}\n":   "",
	} {
		p, err := Parse([]byte(src))
		if err != nil || p.FairShare == nil || p.FairShare.Basis != want {
			t.Errorf("%q: %+v %v, want basis %q", src, p, err, want)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	def := Default()
	for _, src := range []string{"", "\n# nothing\n", "~\n", "---\n", "backfill: ~\nsuspend:\nfair_share: null\nquotas: {}\novercommit: {}\n", `{}`, "backfill: ''\nplacement: \"\"\n"} {
		p, err := Parse([]byte(src))
		if err != nil || !reflect.DeepEqual(*p, def) {
			t.Errorf("Parse(%q) = %+v, %v; want the default policy", src, p, err)
		}
	}
	p, err := Parse([]byte("quotas: {a: ~, 7: {}, b: {cpu: 0.5, memory: 1.5G, workspaces: 2.0}}\nfair_share: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]calendar.Quota{"a": {}, "7": {}, "b": {MilliCPU: 500, Memory: 1500000000, Workspaces: 2}}
	if !reflect.DeepEqual(p.Quotas, want) {
		t.Errorf("quotas %+v, want %+v", p.Quotas, want)
	}
	if p.FairShare == nil || p.FairShare.Weights != nil || p.FairShare.HalfLife != 0 {
		t.Errorf("fair share %+v, want on, with no weights", p.FairShare)
	}
	// Merge keys work, as they did.
	p, err = Parse([]byte("base: &b {cpu: 2, memory: 1Gi}\n"))
	if err == nil || !strings.Contains(err.Error(), "base: unknown field") {
		t.Errorf("an unknown top-level key: got %v", err)
	}
	p, err = Parse([]byte("quotas:\n  a: &b {cpu: 2, memory: 1Gi}\n  c: {<<: *b, workspaces: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if q := p.Quotas["c"]; q.MilliCPU != 2000 || q.Memory != model.GiB || q.Workspaces != 1 {
		t.Errorf("merged quota %+v", q)
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []struct {
		src, field, want string
		line             int
	}{
		{"overcommit: {cpu: 0.5}\n", "overcommit.cpu", "overcommit.cpu: 0.5, want a ratio from 1 (none) to 1000", 0},
		{"fair_share: {basis: vibes}\n", "fair_share.basis", `fair_share.basis: "vibes", want reserved`, 0},
		{"fair_share: {basis: 2}\n", "fair_share.basis", "fair_share.basis: want a string", 0},
		{"overcommit: {memory: 0}\n", "overcommit.memory", "overcommit.memory: 0", 0},
		{"overcommit: {disk: -2}\n", "overcommit.disk", "overcommit.disk: -2", 0},
		{"overcommit: {cpu: lots}\n", "overcommit.cpu", `overcommit.cpu: want a number, got "lots"`, 0},
		{"overcommit: {gpu: 2}\n", "overcommit.gpu", "overcommit.gpu: unknown field (want cpu, memory, disk or bandwidth)", 0},
		{"overcommit: {bandwidth: 5000}\n", "overcommit.bandwidth", "overcommit.bandwidth: 5000", 0},
		{"overcommit: {cpu: .nan}\n", "overcommit.cpu", "overcommit.cpu: NaN, want a ratio", 0},
		{"overcommit: {cpu: .inf}\n", "overcommit.cpu", "overcommit.cpu: +Inf, want a ratio", 0},
		{"overcommit: 2\n", "overcommit", "overcommit: want a mapping, got 2", 0},
		{"backfill: sometimes\n", "backfill", `backfill: unknown backfill "sometimes"`, 0},
		{"backfill: no\n", "backfill", "backfill: want a string, got false", 0},
		{"placement: [pack]\n", "placement", "placement: want a string, got a list", 0},
		{"placement: best\n", "placement", `placement: unknown placement "best"`, 0},
		{"suspend: maybe\n", "suspend", `suspend: want true, false or serial-only, got "maybe"`, 0},
		{"suspend: 1\n", "suspend", `suspend: want true, false or serial-only, got 1`, 0},
		{"exclusion: shared\n", "exclusion", `exclusion: unknown exclusion "shared" (want local or global)`, 0},
		{"migrate: 1\n", "migrate", `migrate: want true or false, got 1`, 0},
		{"colour: red\n", "colour", "colour: unknown field (want backfill, placement, suspend, exclusion, migrate, gaps, gap_min_run, min_run, shutdown_time, fair_share, quotas, overcommit or link)", 0},
		{"link: {bandwidth: fast}\n", "link.bandwidth", `link.bandwidth: `, 0},
		{"link: {bandwidth: -1Mi}\n", "link.bandwidth", "link.bandwidth: -1Mi is negative, want 0 (no shared link) or more", 0},
		{"link: {multicast: yes please}\n", "link.multicast", `link.multicast: want true or false, got "yes please"`, 0},
		{"link: {cache: 20Gi}\n", "link", "link: multicast and cache need a bandwidth (a size per second such as 100Mi, or measured)", 0},
		{"link: {speed: 1}\n", "link.speed", "link.speed: unknown field (want bandwidth, multicast or cache)", 0},
		{"link: 100Mi\n", "link", "link: want a mapping", 0},
		{"gaps: often\n", "gaps", `gaps: want true or false, got "often"`, 0},
		{"gap_min_run: -5m\n", "gap_min_run", "gap_min_run: -5m is negative, want 0 (the default, 5m0s) or more", 0},
		{"gap_min_run: soon\n", "gap_min_run", `gap_min_run: time: invalid duration "soon"`, 0},
		{"min_run: -1m\n", "min_run", "min_run: -1m is negative, want 0 (the default, none) or more", 0},
		{"shutdown_time: -30s\n", "shutdown_time", "shutdown_time: -30s is negative, want 0 (the default, not modelled) or more", 0},
		{"shutdown_time: 2h\n", "shutdown_time", "shutdown_time: 2h is more than 1h0m0s, the most it may be", 0},
		{"shutdown_time: 30\n", "shutdown_time", "shutdown_time: want a string, got 30", 0},
		{"shutdown_time: soon\n", "shutdown_time", `shutdown_time: time: invalid duration "soon"`, 0},
		{"1: red\n", "1", "1: unknown field", 0},
		{"a.b: red\n", `["a.b"]`, `["a.b"]: unknown field`, 0},
		{"quotas: {a: {memory: 1Zi}}\n", "quotas.a.memory", `quotas.a.memory: unknown unit "Zi"`, 0},
		{"quotas: {a: {memory: -1Gi}}\n", "quotas.a.memory", "quotas.a.memory: -1Gi is negative", 0},
		{"quotas: {a: {memory: 1e30}}\n", "quotas.a.memory", "too large", 0},
		{"quotas: {a: {memory: true}}\n", "quotas.a.memory", "want a size such as 8Gi, got true", 0},
		{"quotas: {a: {cpu: -1}}\n", "quotas.a.cpu", "quotas.a.cpu: -1, want a number of cores from 0 (no limit)", 0},
		{"quotas: {a: {cpu: -0.0001}}\n", "quotas.a.cpu", "quotas.a.cpu: -0.0001, want", 0},
		{"quotas: {a: {cpu: 0.0001}}\n", "quotas.a.cpu", "less than the smallest quota", 0},
		{"quotas: {a: {cpu: 1e300}}\n", "quotas.a.cpu", "quotas.a.cpu: 1e+300, want", 0},
		{"quotas: {a: {cpu: 99999999999999999999999}}\n", "quotas.a.cpu", "quotas.a.cpu: 1e+23, want", 0},
		{"quotas: {a: {cpu: \"4\"}}\n", "quotas.a.cpu", `want a number, got "4"`, 0},
		{"quotas: {a: {workspaces: -3}}\n", "quotas.a.workspaces", "-3 is negative", 0},
		{"quotas: {a: {workspaces: 1.5}}\n", "quotas.a.workspaces", "1.5, want a whole number", 0},
		{"quotas: {a: {workspaces: 18446744073709551615}}\n", "quotas.a.workspaces", "too large", 0},
		{"quotas: {a: {core_hours: -1}}\n", "quotas.a.core_hours", "-1, want", 0},
		{"quotas: {a: {core_hours: .nan}}\n", "quotas.a.core_hours", "NaN, want", 0},
		{"quotas: {a: {gpus: 1}}\n", "quotas.a.gpus", "unknown field (want cpu, memory, workspaces or core_hours)", 0},
		{"quotas: {a: 4}\n", "quotas.a", "want a mapping, got 4", 0},
		{"quotas: {1: {}, \"1\": {}}\n", "quotas.1", "listed twice", 0},
		{"quotas: {~: {cpu: 1}}\n", "quotas.null", "want a project name", 0},
		{"quotas: {a: {cpu: !!int x}}\n", "quotas.a.cpu", "cannot decode !!str `x` as a !!int", 0},
		{"quotas: {[a]: {cpu: 1}}\n", "quotas", "invalid map key", 0},
		{"quotas: [a]\n", "quotas", "want a mapping, got a list", 0},
		{"quotas: {a.b: {cpu: -1}}\n", `quotas["a.b"].cpu`, "-1, want", 0},
		{"fair_share: {half_life: soon}\n", "fair_share.half_life", `fair_share.half_life: time: invalid duration "soon"`, 0},
		{"fair_share: {half_life: -1h}\n", "fair_share.half_life", "-1h is negative", 0},
		{"fair_share: {half_life: 3600}\n", "fair_share.half_life", "want a string, got 3600", 0},
		{"fair_share: {weights: {a: 0}}\n", "fair_share.weights.a", "0, want a weight > 0", 0},
		{"fair_share: {weights: {a: ~}}\n", "fair_share.weights.a", "want a weight > 0, got null", 0},
		{"fair_share: {weights: {a: .inf}}\n", "fair_share.weights.a", "+Inf, want a weight > 0", 0},
		{"fair_share: {weights: [a]}\n", "fair_share.weights", "want a mapping, got a list", 0},
		{"fair_share: true\n", "fair_share", "want a mapping, got true", 0},
		// Syntax and encoding errors give the line.
		{"backfill: none\nquotas:\n  a: {cpu: 1\n", "", "line 3: did not find expected ',' or '}'", 3},
		{"a: b: c\n", "", "line 1: mapping values are not allowed in this context", 1},
		{"# policy\nquotas:\n  a: *nothing\n", "", "line 3: unknown anchor 'nothing' referenced", 3},
		{"# policy\n? [a]\n: 1\n", "", "line 2: invalid map key", 2},
		{"# policy\n- backfill: none\n", "", "line 2: want a mapping of settings", 2},
		{"backfill: none\nplacement: \xff\n", "", "line 2: invalid UTF-8 (byte 0xff at column 12)", 2},
		{"backfill: none\r\nplacement: a\x00\n", "", "line 2: character U+0000 at column 13 is not allowed", 2},
		{"\xff\xfeb\x00\x00\xd8", "", "line 1: incomplete UTF-16 surrogate pair", 1},
		{"\xff\xfeb\x00\n\x00\x00\xdc", "", "line 2: invalid UTF-16: low surrogate 0xdc00", 2},
		{"\xfe\xff\x00b\x00", "", "line 1: incomplete UTF-16 character", 1},
		{strings.Repeat("[", 20000), "", "exceeded max depth", 1},
	} {
		_, err := Parse([]byte(bad.src))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%q): got %v, want an error mentioning %q", bad.src, err, bad.want)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Field != bad.field || e.Line != bad.line {
			t.Errorf("Parse(%q): got %#v, want an *Error with field %q, line %d", bad.src, err, bad.field, bad.line)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte(fullPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	checkFull(t, p)
	if err := os.WriteFile(path, []byte("overcommit: {cpu: 0.5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || err.Error() != "policy "+path+": overcommit.cpu: 0.5, want a ratio from 1 (none) to 1000" {
		t.Errorf("Load: got %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.HasPrefix(err.Error(), "policy: open ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: got %v", err)
	}
	if p, err := Load(""); err != nil || !reflect.DeepEqual(*p, Default()) {
		t.Errorf("default: %+v %v", p, err)
	}
}

// TestSuspendModes: suspend takes true, false or serial-only (Haizea's
// three suspension modes), exclusion local or global.
func TestSuspendModes(t *testing.T) {
	for _, tc := range []struct {
		doc             string
		suspend, serial bool
		exclusion       calendar.Exclusion
	}{
		{"suspend: true\n", true, false, ""},
		{"suspend: false\n", false, false, ""},
		{"suspend: serial-only\n", true, true, ""},
		{"suspend: serial-only\nexclusion: local\n", true, true, calendar.ExclusionLocal},
		{"exclusion: global\n", true, false, calendar.ExclusionGlobal},
		{"suspend: ~\n", true, false, ""},
	} {
		p, err := Parse([]byte(tc.doc))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.doc, err)
		}
		if p.Suspend != tc.suspend || p.SerialOnly != tc.serial || p.Exclusion != tc.exclusion {
			t.Errorf("Parse(%q): suspend %v, serial-only %v, exclusion %q; want %v, %v, %q", tc.doc, p.Suspend, p.SerialOnly, p.Exclusion, tc.suspend, tc.serial, tc.exclusion)
		}
	}
}
