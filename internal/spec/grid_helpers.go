package spec

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"

	"go.yaml.in/yaml/v2"

	"vgrid/internal/model"
)

// This file exports what internal/gridspec (the virtual grid file) needs
// of this package: the strict decoder and the exporter applied to a
// whole grid, and the checks and error list of the other specs.

var gridType = reflect.TypeFor[model.GridSpec]()

// Add records a problem with a field (a path such as "clusters[0].name").
func (e *FieldErrors) Add(field, reason string) { e.add(field, reason) }

// AddAll adds the problems of err with prefix before their fields
// ("clusters[0]." and "roles[1].count" make "clusters[0].roles[1].count").
// An err that is not a *FieldErrors is added whole, at field prefix
// without its trailing '.' (or "spec").
func (e *FieldErrors) AddAll(prefix string, err error) {
	if err == nil {
		return
	}
	var fe *FieldErrors
	if !errors.As(err, &fe) {
		e.add(orRoot(trimDot(prefix)), err.Error())
		return
	}
	for _, f := range fe.list {
		e.add(prefix+f.Field, f.Reason)
	}
	e.dropped += fe.dropped
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// Err returns e as an error, or nil when it holds no problem.
func (e *FieldErrors) Err() error { return e.orNil() }

// ValidateLease checks a lease's shape alone, with the field paths of
// Validate ("lease.kind", "lease.start", ...); nil when it is valid.
func ValidateLease(l *model.LeaseSpec) error {
	if l == nil {
		return nil
	}
	errs := &FieldErrors{}
	validateLease(errs, l)
	return errs.orNil()
}

// ValidateDuration checks a lease length alone (field "duration"): more
// than 0, at most MaxDuration; nil when it is valid.
func ValidateDuration(d model.Duration) error {
	errs := &FieldErrors{}
	validateDuration(errs, d)
	return errs.orNil()
}

// DecodeGrid reads a grid file (YAML or JSON, at most MaxSize bytes)
// strictly, as Parse reads a workspace spec: unknown fields, duplicate
// keys, wrong types and units are *FieldErrors naming the field path, with
// hints for typos. It does not validate, and it skips the top-level
// "params" (the caller reads the parameters before substituting them, see
// internal/gridspec). A cluster role without a count gets 1; empty lists
// and maps become nil, so that the grid survives ExportGrid unchanged.
func DecodeGrid(data []byte) (model.GridSpec, error) {
	root, err := parseTree(data)
	if err != nil {
		return model.GridSpec{}, err
	}
	if root.kind != kindObject {
		if root.kind == kindNull {
			return model.GridSpec{}, errors.New("parse spec: empty document")
		}
		return model.GridSpec{}, fmt.Errorf("parse spec: want an object, got %s", root.describe())
	}
	for i, k := range root.keys {
		if k == "params" {
			root.keys = append(root.keys[:i:i], root.keys[i+1:]...)
			root.vals = append(root.vals[:i:i], root.vals[i+1:]...)
			break
		}
	}
	var g model.GridSpec
	if err := decode(root, &g); err != nil {
		hints := map[string]string{}
		suggestFields(root, gridType, "", hints, 0)
		addHints(err, hints)
		return model.GridSpec{}, err
	}
	if clusters := get(root, "clusters"); clusters != nil && clusters.kind == kindArray {
		for i, c := range clusters.vals {
			roles := get(c, "roles")
			if roles == nil || roles.kind != kindArray {
				continue
			}
			for j, r := range roles.vals {
				if r.kind == kindObject && get(r, "count") == nil {
					g.Clusters[i].Roles[j].Count = 1
				}
			}
		}
	}
	normalizeGrid(&g)
	return g, nil
}

// normalizeGrid makes empty lists and maps nil and writes subnets in
// their canonical form, in the grid and in its parts.
func normalizeGrid(g *model.GridSpec) {
	if len(g.Params) == 0 {
		g.Params = nil
	}
	if len(g.Networks) == 0 {
		g.Networks = nil
	}
	for i, n := range g.Networks {
		if p, err := netip.ParsePrefix(n.Subnet); err == nil {
			g.Networks[i].Subnet = p.String()
		}
	}
	if len(g.Volumes) == 0 {
		g.Volumes = nil
	}
	if len(g.Clusters) == 0 {
		g.Clusters = nil
	}
	for i := range g.Clusters {
		normalizeCluster(&g.Clusters[i])
	}
	if len(g.Workspaces) == 0 {
		g.Workspaces = nil
	}
	for i := range g.Workspaces {
		normalize(&g.Workspaces[i])
	}
}

// ExportGrid writes a grid as YAML that DecodeGrid reads back to the same
// grid (params included, as a map of strings): fields in the order of the
// format, empty ones left out, units written out. A part's duration is
// left out when it is 0 (the part takes the grid's).
func ExportGrid(g model.GridSpec) ([]byte, error) {
	root := encode(reflect.ValueOf(g))
	for _, list := range []string{"clusters", "workspaces"} {
		parts := get(root, list)
		if parts == nil || parts.kind != kindArray {
			continue
		}
		for _, p := range parts.vals {
			for i, k := range p.keys {
				if k == "duration" && p.vals[i].kind == kindString && p.vals[i].str == shortDuration(0) {
					p.keys = append(p.keys[:i:i], p.keys[i+1:]...)
					p.vals = append(p.vals[:i:i], p.vals[i+1:]...)
					break
				}
			}
		}
	}
	out, err := yaml.Marshal(toYAML(root))
	if err != nil {
		return nil, fmt.Errorf("export grid: %w", err)
	}
	return out, nil
}
