package policyfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// FuzzParse checks that Parse never panics; that an error names the field
// at fault or the line of a syntax error; that a policy it accepts is one
// the calendar accepts, with no host and with one; and that the policy
// survives being written out and parsed again. The seed corpus is in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullPolicy))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			checkError(t, data, err)
			return
		}
		if _, err := calendar.New(nil, *p); err != nil {
			t.Fatalf("Parse accepted a policy calendar.New refuses: %v\npolicy %+v", err, p)
		}
		host := calendar.Host{Name: "h1", Capacity: model.Resources{MilliCPU: 64000, Memory: 256 * model.GiB, Disk: 4 * model.TiB, Bandwidth: 10 << 30}}
		if _, err := calendar.New([]calendar.Host{host}, *p); err != nil {
			t.Fatalf("Parse accepted a policy calendar.New refuses with a host: %v\npolicy %+v", err, p)
		}
		doc := document(p)
		js, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("JSON of %+v: %v", p, err)
		}
		roundTrip(t, p, js)
		if _, ok := p.Quotas["<<"]; ok {
			return // yaml.v2 writes the string "<<" as a merge key
		}
		if fs := p.FairShare; fs != nil {
			if _, ok := fs.Weights["<<"]; ok {
				return
			}
		}
		ys, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatalf("YAML of %+v: %v", p, err)
		}
		roundTrip(t, p, ys)
	})
}

// roundTrip checks that Parse reads p written out as out.
func roundTrip(t *testing.T, p *calendar.Policy, out []byte) {
	t.Helper()
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse of the policy written out: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(again, p) {
		t.Fatalf("round trip: got %+v, want %+v\n%s", again, p, out)
	}
}

// checkError checks that err says where the problem is.
func checkError(t *testing.T, data []byte, err error) {
	t.Helper()
	if errors.Is(err, calendar.ErrInvalid) {
		t.Fatalf("Parse passed a policy that calendar.New refused: %v", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse: got %T %v, want an *Error", err, err)
	}
	if e.Reason == "" {
		t.Fatalf("Parse: got %#v, with no reason", e)
	}
	msg := err.Error()
	switch {
	case e.Field != "":
		if !strings.HasPrefix(msg, e.Field+": ") {
			t.Fatalf("Parse: error %q does not start with its field %q", msg, e.Field)
		}
	case e.Line > 0:
		if !strings.HasPrefix(msg, "line "+strconv.Itoa(e.Line)+": ") {
			t.Fatalf("Parse: error %q does not start with its line %d", msg, e.Line)
		}
		// Every line break (LF, CR, NEL, LS, PS), in UTF-8 or UTF-16, has
		// one of these bytes.
		lines := 1
		for _, b := range data {
			if bytes.IndexByte([]byte{0x0a, 0x0d, 0x85, 0xa8, 0xa9, 0x28, 0x29}, b) >= 0 {
				lines++
			}
		}
		if e.Line > lines {
			t.Fatalf("Parse: error %q is at line %d of a document of at most %d lines", msg, e.Line, lines)
		}
	default:
		t.Fatalf("Parse: error %q names neither a field nor a line", msg)
	}
}

// ordered is a mapping with its keys in order, for yaml.Marshal and
// json.Marshal.
type ordered []item

type item struct {
	k string
	v any
}

func (o ordered) MarshalYAML() (any, error) {
	m := yaml.MapSlice{}
	for _, it := range o {
		m = append(m, yaml.MapItem{Key: it.k, Value: it.v})
	}
	return m, nil
}

func (o ordered) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, it := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(it.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(it.v)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// document is p as a policy file.
func document(p *calendar.Policy) ordered {
	var suspend any = p.Suspend
	if p.SerialOnly {
		suspend = "serial-only"
	}
	doc := ordered{{"backfill", string(p.Backfill)}, {"placement", string(p.Placement)}, {"suspend", suspend}, {"migrate", p.Migrate}, {"gaps", p.Gaps}}
	if p.Exclusion != "" {
		doc = append(doc, item{"exclusion", string(p.Exclusion)})
	}
	if p.GapMinRun != 0 {
		doc = append(doc, item{"gap_min_run", p.GapMinRun.String()})
	}
	if p.MinRun != 0 {
		doc = append(doc, item{"min_run", p.MinRun.String()})
	}
	if p.ShutdownTime != 0 {
		doc = append(doc, item{"shutdown_time", p.ShutdownTime.String()})
	}
	if fs := p.FairShare; fs != nil {
		m := ordered{}
		if fs.HalfLife != 0 {
			m = append(m, item{"half_life", fs.HalfLife.String()})
		}
		if fs.Basis != "" {
			m = append(m, item{"basis", string(fs.Basis)})
		}
		if len(fs.Weights) > 0 {
			w := ordered{}
			for _, name := range sortedKeys(fs.Weights) {
				w = append(w, item{name, fs.Weights[name]})
			}
			m = append(m, item{"weights", w})
		}
		doc = append(doc, item{"fair_share", m})
	}
	if len(p.Quotas) > 0 {
		qs := ordered{}
		for _, name := range sortedKeys(p.Quotas) {
			q, m := p.Quotas[name], ordered{}
			if q.MilliCPU != 0 {
				m = append(m, item{"cpu", float64(q.MilliCPU) / 1000})
			}
			if q.Memory != 0 {
				m = append(m, item{"memory", q.Memory.String()})
			}
			if q.Workspaces != 0 {
				m = append(m, item{"workspaces", q.Workspaces})
			}
			if q.CoreHours != 0 {
				m = append(m, item{"core_hours", q.CoreHours})
			}
			qs = append(qs, item{name, m})
		}
		doc = append(doc, item{"quotas", qs})
	}
	o := ordered{}
	for _, r := range []item{{"cpu", p.Overcommit.CPU}, {"memory", p.Overcommit.Memory}, {"disk", p.Overcommit.Disk}, {"bandwidth", p.Overcommit.Bandwidth}} {
		if r.v != 0.0 {
			o = append(o, r)
		}
	}
	if len(o) > 0 {
		doc = append(doc, item{"overcommit", o})
	}
	if l := p.Link; l != (calendar.Link{}) {
		m := ordered{}
		switch {
		case l.Measured:
			m = append(m, item{"bandwidth", "measured"})
		case l.Bandwidth != 0:
			m = append(m, item{"bandwidth", model.ByteSize(l.Bandwidth).String()})
		}
		if l.Multicast {
			m = append(m, item{"multicast", true})
		}
		if l.Cache != 0 {
			m = append(m, item{"cache", model.ByteSize(l.Cache).String()})
		}
		doc = append(doc, item{"link", m})
	}
	return doc
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
