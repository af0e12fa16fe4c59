package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "p.yaml")
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	p, err := loadPolicy(write(`
backfill: conservative
placement: spread
suspend: false
fair_share: {half_life: 24h, weights: {physics: 2}}
quotas:
  biology: {cpu: 4, memory: 8Gi, workspaces: 3, core_hours: 100}
overcommit: {cpu: 4, memory: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Backfill != calendar.BackfillConservative || p.Placement != calendar.Spread || p.Suspend {
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
	for _, bad := range []struct{ src, want string }{
		{"overcommit: {cpu: 0.5}\n", "overcommit.cpu: 0.5, want a ratio from 1 (none) to 1000"},
		{"overcommit: {memory: 0}\n", "overcommit.memory: 0"},
		{"overcommit: {disk: -2}\n", "overcommit.disk: -2"},
		{"overcommit: {cpu: lots}\n", "overcommit.cpu"},
		{"overcommit: {gpu: 2}\n", "gpu"},
		{"overcommit: {bandwidth: 5000}\n", "overcommit.bandwidth: 5000"},
		{"backfill: sometimes\n", "backfill"},
		{"colour: red\n", "colour"},
		{"quotas: {a: {memory: 1Zi}}\n", "Zi"},
		{"fair_share: {half_life: soon}\n", "half_life"},
	} {
		if _, err := loadPolicy(write(bad.src)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("policy %q: got %v, want an error mentioning %q", bad.src, err, bad.want)
		}
	}
	if p, err := loadPolicy(""); err != nil || p.Backfill != calendar.BackfillAggressive {
		t.Errorf("default: %+v %v", p, err)
	}
}
