package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/internal/calendar"
)

// TestSimPolicy: without --policy the flags are the policy; with it the
// file's keys are, except where a policy flag was given; the file brings
// what has no flag; a bad file is refused naming its key.
func TestSimPolicy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte("backfill: conservative\nsuspend: serial-only\nmin_run: 10m\nfair_share: {half_life: 24h}\nlink: {bandwidth: measured}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	flags := calendar.DefaultPolicy()
	flags.Backfill, flags.MinRun, flags.Link.Bandwidth = calendar.BackfillNone, time.Minute, 100<<20
	none := func(string) bool { return false }
	if p, err := simPolicy("", flags, none); err != nil || p.Backfill != calendar.BackfillNone || p.FairShare != nil {
		t.Fatalf("no file: %+v, %v", p, err)
	}
	p, err := simPolicy(file, flags, none)
	if err != nil || p.Backfill != calendar.BackfillConservative || !p.SerialOnly || p.MinRun != 10*time.Minute ||
		p.FairShare == nil || p.FairShare.HalfLife != 24*time.Hour || !p.Link.Measured {
		t.Fatalf("file alone: %+v, %v", p, err)
	}
	given := func(f string) bool { return f == "backfill" || f == "link-bandwidth" }
	p, err = simPolicy(file, flags, given)
	if err != nil || p.Backfill != calendar.BackfillNone || p.MinRun != 10*time.Minute || p.Link.Measured || p.Link.Bandwidth != 100<<20 || !p.SerialOnly {
		t.Fatalf("flags over the file: %+v, %v", p, err)
	}
	if err := os.WriteFile(file, []byte("exclusion: nfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := simPolicy(file, flags, none); err == nil || !strings.Contains(err.Error(), `exclusion: unknown exclusion "nfs"`) {
		t.Fatalf("bad file: %v", err)
	}
}
