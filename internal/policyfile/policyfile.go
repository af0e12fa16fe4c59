package policyfile

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// A policy file, in YAML (or JSON):
//
//	backfill: aggressive        # none, conservative, aggressive
//	placement: first-fit        # first-fit, pack, spread
//	suspend: true               # preempt best effort by suspending (false: requeue; serial-only: leases of one member only)
//	exclusion: local            # memory images saved one at a time per host (local) or for all hosts (global)
//	migrate: true               # live-migrate best effort elsewhere before displacing it (default true)
//	gaps: true                  # start best effort in gaps shorter than its run, suspended in time (default true)
//	gap_min_run: 5m             # the least run a gap must give (default 5m)
//	min_run: 10m                # the least a lease runs before it may be preempted (default 0: none)
//	shutdown_time: 30s          # a lease's guests' shutdown after its run, its slots held meanwhile (default 0: not modelled; at most 1h)
//	fair_share:
//	  half_life: 24h
//	  basis: used               # or reserved (the default)
//	  weights: {physics: 2, biology: 1}
//	quotas:
//	  biology: {cpu: 4, memory: 8Gi, workspaces: 3, core_hours: 100}
//	overcommit: {cpu: 4}        # promised/real capacity per resource (cpu, memory, disk, bandwidth), >= 1
//	link:                       # leases' images over the repository's shared link
//	  bandwidth: measured       # bytes/s such as 100Mi, or measured: the hosts' median stage rate
//	  multicast: false          # one transfer for all the hosts of a lease
//	  cache: 20Gi               # bytes of images each host keeps (default: no bound)
//
// A key set to null (`suspend: ~`, or `suspend:` with nothing after it) is
// the same as a key left out.

// Error is a problem with a policy file. Field is the path of the setting
// at fault, such as "overcommit.cpu" or "quotas.biology.memory" (a name
// that is not a plain word is quoted: `quotas["a.b"].cpu`); Line is the
// line of a syntax or encoding error, counted from 1. At least one of them
// is set.
type Error struct {
	Field  string
	Line   int
	Reason string
}

// Error returns "field: reason", "line N: reason" or "field: line N: reason".
func (e *Error) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	if e.Line > 0 {
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

func fieldErr(field, format string, args ...any) *Error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Load reads the policy file at path and parses it; "" gives
// Default. Errors start with "policy PATH: ".
func Load(path string) (*calendar.Policy, error) {
	if path == "" {
		p := Default()
		return &p, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// Default is the control plane's policy where the file says nothing:
// calendar.DefaultPolicy with live migration before suspension
// (Policy.Migrate), which the simulator leaves off unless asked
// (vgrid sim --migrate) to compare with systems that cannot migrate.
func Default() calendar.Policy {
	p := calendar.DefaultPolicy()
	p.Migrate = true
	return p
}

// Parse reads a policy file's contents: YAML, or JSON (which the YAML
// parser reads too), in UTF-8 or, after a byte order mark, UTF-16. Keys
// match exactly (`Backfill` is an unknown field). An empty document is
// the default policy. Problems come back as *Error, naming the field or
// the line; the one other error would be calendar.New refusing a policy
// that passed Parse's own checks, which is a bug in them.
func Parse(data []byte) (*calendar.Policy, error) {
	doc, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	p := Default()
	if !doc.null() {
		if err := apply(&p, doc); err != nil {
			return nil, err
		}
	}
	// Parse checks everything the calendar does, with the field named;
	// ask the calendar too, so that a check it gains later is not missed.
	if _, err := calendar.New(nil, p); err != nil {
		return nil, err
	}
	return &p, nil
}

// maxCores bounds a quota's cpu, so that it converts to millicores
// exactly (well below 2^53) and never overflows.
const maxCores = 1e12

func apply(p *calendar.Policy, doc node) error {
	if err := only(doc, "", "backfill", "placement", "suspend", "exclusion", "migrate", "gaps", "gap_min_run", "min_run", "shutdown_time", "fair_share", "quotas", "overcommit", "link"); err != nil {
		return err
	}
	if s, ok, err := str(doc.get("backfill"), "backfill"); err != nil {
		return err
	} else if ok {
		switch b := calendar.Backfill(s); b {
		case calendar.BackfillNone, calendar.BackfillConservative, calendar.BackfillAggressive:
			p.Backfill = b
		case "":
		default:
			return fieldErr("backfill", "unknown backfill %q (want none, conservative or aggressive)", s)
		}
	}
	if s, ok, err := str(doc.get("placement"), "placement"); err != nil {
		return err
	} else if ok {
		switch pl := calendar.Placement(s); pl {
		case calendar.FirstFit, calendar.Pack, calendar.Spread:
			p.Placement = pl
		case "":
		default:
			return fieldErr("placement", "unknown placement %q (want first-fit, pack or spread)", s)
		}
	}
	if err := suspension(p, doc); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"migrate", &p.Migrate}, {"gaps", &p.Gaps}} {
		if n := doc.get(f.name); !n.null() {
			b, err := boolean(n, f.name)
			if err != nil {
				return err
			}
			*f.dst = b
		}
	}
	for _, f := range []struct {
		name, def string
		dst       *time.Duration
		max       time.Duration // 0: none
	}{{"gap_min_run", calendar.DefaultGapMinRun.String(), &p.GapMinRun, 0}, {"min_run", "none", &p.MinRun, 0},
		{"shutdown_time", "not modelled", &p.ShutdownTime, calendar.MaxBootTime}} {
		if s, ok, err := str(doc.get(f.name), f.name); err != nil {
			return err
		} else if ok && s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				return fieldErr(f.name, "%v", err)
			}
			if d < 0 {
				return fieldErr(f.name, "%s is negative, want 0 (the default, %s) or more", s, f.def)
			}
			if f.max > 0 && d > f.max {
				return fieldErr(f.name, "%s is more than %s, the most it may be", s, f.max)
			}
			*f.dst = d
		}
	}
	if err := fairShare(p, doc.get("fair_share")); err != nil {
		return err
	}
	if err := quotas(p, doc.get("quotas")); err != nil {
		return err
	}
	if err := link(p, doc.get("link")); err != nil {
		return err
	}
	return overcommit(p, doc.get("overcommit"))
}

func fairShare(p *calendar.Policy, n node) error {
	const path = "fair_share"
	if n.null() {
		return nil
	}
	if err := mapping(n, path); err != nil {
		return err
	}
	if err := only(n, path, "half_life", "weights", "basis"); err != nil {
		return err
	}
	fs := &calendar.FairShare{}
	const hl = path + ".half_life"
	if s, ok, err := str(n.get("half_life"), hl); err != nil {
		return err
	} else if ok && s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fieldErr(hl, "%v", err)
		}
		if d < 0 {
			return fieldErr(hl, "%s is negative, want 0 (never forget) or more", s)
		}
		fs.HalfLife = d
	}
	const bp = path + ".basis"
	if s, ok, err := str(n.get("basis"), bp); err != nil {
		return err
	} else if ok && s != "" {
		switch b := calendar.Basis(s); b {
		case calendar.BasisReserved, calendar.BasisUsed:
			fs.Basis = b
		default:
			return fieldErr(bp, "%q, want reserved (held cores × time) or used (measured CPU time)", s)
		}
	}
	const wp = path + ".weights"
	weights, err := projects(n.get("weights"), wp)
	if err != nil {
		return err
	}
	for _, w := range weights {
		path := join(wp, w.name)
		if w.n.null() {
			return fieldErr(path, "want a weight > 0, got null")
		}
		v, err := number(w.n, path)
		if err != nil {
			return err
		}
		if !(v > 0) || math.IsInf(v, 0) {
			return fieldErr(path, "%v, want a weight > 0", v)
		}
		if fs.Weights == nil {
			fs.Weights = map[string]float64{}
		}
		fs.Weights[w.name] = v
	}
	p.FairShare = fs
	return nil
}

func quotas(p *calendar.Policy, n node) error {
	list, err := projects(n, "quotas")
	if err != nil {
		return err
	}
	for _, e := range list {
		q, err := quota(e.n, join("quotas", e.name))
		if err != nil {
			return err
		}
		if p.Quotas == nil {
			p.Quotas = map[string]calendar.Quota{}
		}
		p.Quotas[e.name] = q
	}
	return nil
}

// quota reads one project's quota; null is a quota with no limits.
func quota(n node, path string) (calendar.Quota, error) {
	var q calendar.Quota
	if n.null() {
		return q, nil
	}
	if err := mapping(n, path); err != nil {
		return q, err
	}
	if err := only(n, path, "cpu", "memory", "workspaces", "core_hours"); err != nil {
		return q, err
	}
	if c := n.get("cpu"); !c.null() {
		path := join(path, "cpu")
		v, err := number(c, path)
		if err != nil {
			return q, err
		}
		if !(v >= 0 && v <= maxCores) {
			return q, fieldErr(path, "%v, want a number of cores from 0 (no limit) to %g", v, float64(maxCores))
		}
		q.MilliCPU = int64(v*1000 + 0.5)
		if q.MilliCPU == 0 && v > 0 {
			return q, fieldErr(path, "%v is less than the smallest quota, 0.001 cores (0 is no limit)", v)
		}
	}
	if m := n.get("memory"); !m.null() {
		b, err := byteSize(m, join(path, "memory"), "no limit")
		if err != nil {
			return q, err
		}
		q.Memory = b
	}
	if w := n.get("workspaces"); !w.null() {
		path := join(path, "workspaces")
		if err := w.check(path); err != nil {
			return q, err
		}
		var v int
		switch x := w.v.(type) {
		case int:
			v = x
		case int64:
			if x > math.MaxInt {
				return q, fieldErr(path, "%d is too large", x)
			}
			v = int(x)
		case uint64:
			return q, fieldErr(path, "%d is too large", x)
		case float64:
			if x != math.Trunc(x) || !(x >= math.MinInt && x < math.MaxInt) {
				return q, fieldErr(path, "%v, want a whole number of workspaces (0: no limit)", x)
			}
			v = int(x)
		default:
			return q, fieldErr(path, "want a whole number, got %s", w.describe())
		}
		if v < 0 {
			return q, fieldErr(path, "%d is negative, want 0 (no limit) or more", v)
		}
		q.Workspaces = v
	}
	if c := n.get("core_hours"); !c.null() {
		path := join(path, "core_hours")
		v, err := number(c, path)
		if err != nil {
			return q, err
		}
		if !(v >= 0) || math.IsInf(v, 0) {
			return q, fieldErr(path, "%v, want a number of core-hours from 0 (no limit) up", v)
		}
		q.CoreHours = v
	}
	return q, nil
}

func overcommit(p *calendar.Policy, n node) error {
	const path = "overcommit"
	if n.null() {
		return nil
	}
	if err := mapping(n, path); err != nil {
		return err
	}
	if err := only(n, path, "cpu", "memory", "disk", "bandwidth"); err != nil {
		return err
	}
	for _, r := range []struct {
		name string
		to   *float64
	}{
		{"cpu", &p.Overcommit.CPU},
		{"memory", &p.Overcommit.Memory},
		{"disk", &p.Overcommit.Disk},
		{"bandwidth", &p.Overcommit.Bandwidth},
	} {
		c := n.get(r.name)
		if c.null() {
			continue
		}
		path := join(path, r.name)
		v, err := number(c, path)
		if err != nil {
			return err
		}
		if !(v >= 1 && v <= calendar.MaxOvercommit) {
			return fieldErr(path, "%v, want a ratio from 1 (none) to %d", v, calendar.MaxOvercommit)
		}
		*r.to = v
	}
	return nil
}

// suspension reads suspend (true, false or serial-only) and exclusion
// (local or global).
func suspension(p *calendar.Policy, doc node) error {
	if n := doc.get("suspend"); !n.null() {
		if s, ok := n.v.(string); ok && s == "serial-only" {
			p.Suspend, p.SerialOnly = true, true
		} else if b, ok := n.v.(bool); ok {
			p.Suspend, p.SerialOnly = b, false
		} else {
			if err := n.check("suspend"); err != nil {
				return err
			}
			return fieldErr("suspend", "want true, false or serial-only, got %s", n.describe())
		}
	}
	if s, ok, err := str(doc.get("exclusion"), "exclusion"); err != nil {
		return err
	} else if ok {
		switch e := calendar.Exclusion(s); e {
		case calendar.ExclusionLocal, calendar.ExclusionGlobal:
			p.Exclusion = e
		case "":
		default:
			return fieldErr("exclusion", "unknown exclusion %q (want local or global)", s)
		}
	}
	return nil
}

// boolean reads true or false.
func boolean(n node, path string) (bool, error) {
	if err := n.check(path); err != nil {
		return false, err
	}
	b, ok := n.v.(bool)
	if !ok {
		return false, fieldErr(path, "want true or false, got %s", n.describe())
	}
	return b, nil
}

// byteSize reads a size such as 8Gi (a plain number is bytes), 0 or more;
// zero says what 0 means.
func byteSize(m node, path, zero string) (model.ByteSize, error) {
	if err := m.check(path); err != nil {
		return 0, err
	}
	var s string
	switch v := m.v.(type) {
	case string:
		s = v
	case int:
		s = strconv.Itoa(v)
	case int64:
		s = strconv.FormatInt(v, 10)
	case uint64:
		s = strconv.FormatUint(v, 10)
	case float64:
		s = strconv.FormatFloat(v, 'g', -1, 64)
	default:
		return 0, fieldErr(path, "want a size such as 8Gi, got %s", m.describe())
	}
	b, err := model.ParseByteSize(s)
	if err != nil {
		return 0, fieldErr(path, "%v", err)
	}
	if b < 0 {
		return 0, fieldErr(path, "%s is negative, want 0 (%s) or more", s, zero)
	}
	return b, nil
}

// link reads the shared image link (calendar.Link): bandwidth (a size per
// second, or "measured": the hosts' median stage rate), multicast, cache.
func link(p *calendar.Policy, n node) error {
	const path = "link"
	if n.null() {
		return nil
	}
	if err := mapping(n, path); err != nil {
		return err
	}
	if err := only(n, path, "bandwidth", "multicast", "cache"); err != nil {
		return err
	}
	if bw := n.get("bandwidth"); !bw.null() {
		if s, ok := bw.v.(string); ok && s == "measured" {
			p.Link.Measured = true
		} else {
			b, err := byteSize(bw, join(path, "bandwidth"), "no shared link")
			if err != nil {
				return err
			}
			p.Link.Bandwidth = int64(b)
		}
	}
	if m := n.get("multicast"); !m.null() {
		b, err := boolean(m, join(path, "multicast"))
		if err != nil {
			return err
		}
		p.Link.Multicast = b
	}
	if c := n.get("cache"); !c.null() {
		b, err := byteSize(c, join(path, "cache"), "no bound")
		if err != nil {
			return err
		}
		p.Link.Cache = int64(b)
	}
	if (p.Link.Multicast || p.Link.Cache > 0) && p.Link.Bandwidth == 0 && !p.Link.Measured {
		return fieldErr(path, "multicast and cache need a bandwidth (a size per second such as 100Mi, or measured)")
	}
	return nil
}

// mapping checks that n, not null, is a mapping.
func mapping(n node, path string) error {
	if err := n.check(path); err != nil {
		return err
	}
	if !n.isMap {
		return fieldErr(path, "want a mapping, got %s", n.describe())
	}
	return nil
}

// only checks that the mapping n has no keys but names.
func only(n node, path string, names ...string) error {
	for _, k := range n.keys() {
		if s, ok := k.(string); ok && slices.Contains(names, s) {
			continue
		}
		want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
		return fieldErr(join(path, keyName(k)), "unknown field (want %s)", want)
	}
	return nil
}

// str reads a string; ok is false when n is null.
func str(n node, path string) (s string, ok bool, err error) {
	if n.null() {
		return "", false, nil
	}
	if err := n.check(path); err != nil {
		return "", false, err
	}
	s, ok = n.v.(string)
	if !ok {
		return "", false, fieldErr(path, "want a string, got %s", n.describe())
	}
	return s, true, nil
}

// number reads a number, which may be NaN or infinite.
func number(n node, path string) (float64, error) {
	if err := n.check(path); err != nil {
		return 0, err
	}
	switch v := n.v.(type) {
	case int:
		return float64(v), nil
	case int64:
		return float64(v), nil
	case uint64:
		return float64(v), nil
	case float64:
		return v, nil
	}
	return 0, fieldErr(path, "want a number, got %s", n.describe())
}

type project struct {
	name string
	n    node
}

// projects reads a mapping from project names, in name order. YAML keys
// that are numbers or booleans name the project by their text as Go
// prints it (1.0 is project "1").
func projects(n node, path string) ([]project, error) {
	if n.null() {
		return nil, nil
	}
	if err := mapping(n, path); err != nil {
		return nil, err
	}
	var list []project
	seen := map[string]bool{}
	for _, k := range n.keys() {
		var name string
		switch k := k.(type) {
		case string:
			name = k
		case int, int64, uint64, float64, bool:
			name = fmt.Sprint(k)
		default:
			return nil, fieldErr(join(path, keyName(k)), "want a project name, got %s", keyName(k))
		}
		if seen[name] {
			return nil, fieldErr(join(path, name), "project listed twice, under keys that YAML tells apart (such as 1 and \"1\")")
		}
		seen[name] = true
		list = append(list, project{name, n.m[k]})
	}
	return list, nil
}

// join appends a key to a field path.
func join(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// keyName is how a mapping key appears in field paths.
func keyName(k any) string {
	switch k := k.(type) {
	case nil:
		return "null"
	case string:
		return k
	}
	return fmt.Sprint(k)
}
