package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v2"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// policyFile is the lease calendar policy as written in a YAML or JSON file
// (vgrid up --policy FILE):
//
//	backfill: aggressive        # none, conservative, aggressive
//	placement: first-fit        # first-fit, pack, spread
//	suspend: true               # preempt best effort by suspending (false: requeue)
//	fair_share:
//	  half_life: 24h
//	  weights: {physics: 2, biology: 1}
//	quotas:
//	  biology: {cpu: 4, memory: 8Gi, workspaces: 3, core_hours: 100}
//	overcommit: {cpu: 4}        # promised/real capacity per resource (cpu, memory, disk, bandwidth), >= 1
type policyFile struct {
	Backfill  string `json:"backfill"`
	Placement string `json:"placement"`
	Suspend   *bool  `json:"suspend"`
	FairShare *struct {
		HalfLife string             `json:"half_life"`
		Weights  map[string]float64 `json:"weights"`
	} `json:"fair_share"`
	Quotas map[string]struct {
		CPU        float64        `json:"cpu"`
		Memory     model.ByteSize `json:"memory"`
		Workspaces int            `json:"workspaces"`
		CoreHours  float64        `json:"core_hours"`
	} `json:"quotas"`
	Overcommit *struct {
		CPU       *float64 `json:"cpu"`
		Memory    *float64 `json:"memory"`
		Disk      *float64 `json:"disk"`
		Bandwidth *float64 `json:"bandwidth"`
	} `json:"overcommit"`
}

// loadPolicy reads a policy file; "" gives the default policy.
func loadPolicy(path string) (*calendar.Policy, error) {
	p := calendar.DefaultPolicy()
	if path == "" {
		return &p, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var generic any
	if err := yaml.Unmarshal(raw, &generic); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	j, err := json.Marshal(jsonable(generic))
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	var f policyFile
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	if f.Backfill != "" {
		p.Backfill = calendar.Backfill(f.Backfill)
	}
	if f.Placement != "" {
		p.Placement = calendar.Placement(f.Placement)
	}
	if f.Suspend != nil {
		p.Suspend = *f.Suspend
	}
	if f.FairShare != nil {
		fs := &calendar.FairShare{Weights: f.FairShare.Weights}
		if f.FairShare.HalfLife != "" {
			if fs.HalfLife, err = time.ParseDuration(f.FairShare.HalfLife); err != nil {
				return nil, fmt.Errorf("policy %s: fair_share.half_life: %w", path, err)
			}
		}
		p.FairShare = fs
	}
	if len(f.Quotas) > 0 {
		p.Quotas = map[string]calendar.Quota{}
		for proj, q := range f.Quotas {
			p.Quotas[proj] = calendar.Quota{MilliCPU: int64(q.CPU*1000 + 0.5), Memory: q.Memory, Workspaces: q.Workspaces, CoreHours: q.CoreHours}
		}
	}
	if o := f.Overcommit; o != nil {
		for _, r := range []struct {
			name string
			v    *float64
			to   *float64
		}{
			{"cpu", o.CPU, &p.Overcommit.CPU},
			{"memory", o.Memory, &p.Overcommit.Memory},
			{"disk", o.Disk, &p.Overcommit.Disk},
			{"bandwidth", o.Bandwidth, &p.Overcommit.Bandwidth},
		} {
			if r.v == nil {
				continue
			}
			if !(*r.v >= 1 && *r.v <= calendar.MaxOvercommit) {
				return nil, fmt.Errorf("policy %s: overcommit.%s: %v, want a ratio from 1 (none) to %d", path, r.name, *r.v, calendar.MaxOvercommit)
			}
			*r.to = *r.v
		}
	}
	// The calendar validates the rest (unknown backfill names, negative
	// weights) when it is built; check now so the error comes at start.
	if _, err := calendar.New(nil, p); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return &p, nil
}

// jsonable turns YAML's map[any]any into map[string]any.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		for i := range t {
			t[i] = jsonable(t[i])
		}
	}
	return v
}
