package main

import (
	"vgrid/internal/calendar"
	"vgrid/internal/policyfile"
)

// simPolicy is the policy a simulation runs under: flags alone (no
// --policy), or the policy file at path with the policy flags the user
// gave (changed) put over its keys. The file brings what has no flag
// (fair share, quotas, overcommit, a measured link).
func simPolicy(path string, flags calendar.Policy, changed func(string) bool) (calendar.Policy, error) {
	if path == "" {
		return flags, nil
	}
	p, err := policyfile.Load(path)
	if err != nil {
		return calendar.Policy{}, err
	}
	out := *p
	for _, f := range []struct {
		flag string
		set  func()
	}{
		{"backfill", func() { out.Backfill = flags.Backfill }},
		{"depth", func() { out.Depth = flags.Depth }},
		{"placement", func() { out.Placement = flags.Placement }},
		{"suspend", func() { out.Suspend, out.SerialOnly = flags.Suspend, flags.SerialOnly }},
		{"exclusion", func() { out.Exclusion = flags.Exclusion }},
		{"gaps", func() { out.Gaps = flags.Gaps }},
		{"gap-min-run", func() { out.GapMinRun = flags.GapMinRun }},
		{"min-run", func() { out.MinRun = flags.MinRun }},
		{"shutdown-time", func() { out.ShutdownTime = flags.ShutdownTime }},
		{"migrate", func() { out.Migrate = flags.Migrate }},
		{"link-bandwidth", func() { out.Link.Bandwidth, out.Link.Measured = flags.Link.Bandwidth, false }},
		{"multicast", func() { out.Link.Multicast = flags.Link.Multicast }},
		{"image-cache", func() { out.Link.Cache = flags.Link.Cache }},
	} {
		if changed(f.flag) {
			f.set()
		}
	}
	return out, nil
}
