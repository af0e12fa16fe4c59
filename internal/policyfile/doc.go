// Package policyfile reads the lease calendar's policy (calendar.Policy:
// backfilling, placement, suspension, fair share, quotas and overcommit)
// from the YAML or JSON file given to `vgrid up --policy FILE` and `vgrid
// server --policy FILE`. Settings left out keep calendar.DefaultPolicy's
// values. Parse checks every value itself, so that a policy it returns is
// one calendar.New accepts, and its errors say where the problem is: an
// *Error names the field by its path (for example "quotas.biology.memory")
// with the reason, or, for a syntax or encoding error, the line.
package policyfile
