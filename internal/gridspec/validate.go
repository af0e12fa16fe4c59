package gridspec

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"vgrid/internal/ipam"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// Validate checks a grid and returns nil or a *spec.FieldErrors listing
// the problems, with paths from the grid ("clusters[1].roles[0].count").
// With a nil images it does not check that the images exist.
//
// It checks the grid's own fields (name, params, lease, duration,
// networks, volumes), every part with the rules of its kind (its duration
// or the grid's filled in), the limits of a grid, that no two workspaces
// of the grid (clusters' members and single workspaces) share a name, and
// that every volume attached by the parts has one writer and no reader,
// or readers only. Networks and volumes the parts name that the grid does
// not make are left to the server (see Refs).
func Validate(g model.GridSpec, images spec.ImageLookup) error {
	errs := &spec.FieldErrors{}
	if why := spec.ValidVolumeName(g.Name); why != "" {
		errs.Add("name", why)
	}
	validateParams(errs, g.Params)
	errs.AddAll("", spec.ValidateLease(g.Lease))
	validateWindow(errs, g)
	validateNetworks(errs, g.Networks)
	validateVolumes(errs, g.Volumes)
	validateParts(errs, g, images)
	validateNames(errs, g)
	validateWriters(errs, g)
	return errs.Err()
}

func validateParams(errs *spec.FieldErrors, params map[string]string) {
	if len(params) > MaxParams {
		errs.Add("params", fmt.Sprintf("at most %d parameters allowed, got %d", MaxParams, len(params)))
		return
	}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		field := spec.FieldPath("params", k)
		if why := nameProblem(k); why != "" {
			errs.Add(field, why)
		} else if why := valueProblem(params[k]); why != "" {
			errs.Add(field, why)
		}
	}
}

// validateWindow checks the grid's duration: required when a part has
// no lease of its own (it runs in the grid's window), and then the
// duration of such a part, if it gives one, must be the grid's.
func validateWindow(errs *spec.FieldErrors, g model.GridSpec) {
	var linked []string
	check := func(field string, lease *model.LeaseSpec, d model.Duration) {
		if lease != nil {
			return
		}
		linked = append(linked, field)
		if d != 0 && g.Duration != 0 && d != g.Duration {
			errs.Add(field+".duration", fmt.Sprintf("%v differs from the grid's duration (%v): a part without a lease of its own runs in the grid's window; leave out its duration or give it a lease", d, g.Duration))
		}
	}
	for i, c := range g.Clusters {
		check(fmt.Sprintf("clusters[%d]", i), c.Lease, c.Duration)
	}
	for i, w := range g.Workspaces {
		check(fmt.Sprintf("workspaces[%d]", i), w.Lease, w.Duration)
	}
	switch {
	case g.Duration == 0 && len(linked) > 0:
		errs.Add("duration", fmt.Sprintf("required (e.g. 1h): %s %s and so %s in the grid's window", listShort(linked),
			plural(len(linked), "has no lease of its own", "have no lease of their own"), plural(len(linked), "runs", "run")))
	case g.Duration != 0:
		errs.AddAll("", spec.ValidateDuration(g.Duration))
	}
}

func validateNetworks(errs *spec.FieldErrors, nets []model.GridNetwork) {
	if len(nets) > MaxNetworks {
		errs.Add("networks", fmt.Sprintf("at most %d networks allowed, got %d", MaxNetworks, len(nets)))
		return
	}
	seen := map[string]int{}
	for i, n := range nets {
		p := fmt.Sprintf("networks[%d].", i)
		if why := spec.ValidVolumeName(n.Name); why != "" {
			errs.Add(p+"name", why)
		} else if j, dup := seen[n.Name]; dup {
			errs.Add(p+"name", fmt.Sprintf("%q is used by networks[%d]", n.Name, j))
		} else {
			seen[n.Name] = i
		}
		// The rules of POST /networks: no subnet means the default one.
		if n.Subnet != "" {
			if _, err := ipam.ParseSubnet(n.Subnet); err != nil {
				reason := err.Error()
				var ie *ipam.Error
				if errors.As(err, &ie) {
					reason = ie.Reason
				}
				errs.Add(p+"subnet", reason)
			}
		}
	}
}

func validateVolumes(errs *spec.FieldErrors, vols []model.GridVolume) {
	if len(vols) > MaxVolumes {
		errs.Add("volumes", fmt.Sprintf("at most %d volumes allowed, got %d", MaxVolumes, len(vols)))
		return
	}
	made := map[string]bool{}
	for _, v := range vols {
		made[v.Name] = true
	}
	seen := map[string]int{}
	for i, v := range vols {
		p := fmt.Sprintf("volumes[%d].", i)
		if why := spec.ValidVolumeName(v.Name); why != "" {
			errs.Add(p+"name", why)
		} else if j, dup := seen[v.Name]; dup {
			errs.Add(p+"name", fmt.Sprintf("%q is used by volumes[%d]", v.Name, j))
		} else {
			seen[v.Name] = i
		}
		if why := spec.ValidVolumeSize(v.Size); why != "" {
			errs.Add(p+"size", why)
		}
		// The rules of POST /volumes.
		if v.IOPS < 0 || v.IOPS > spec.MaxDiskIOPS {
			errs.Add(p+"iops", fmt.Sprintf("want 0 (no cap) to %d, got %d", spec.MaxDiskIOPS, v.IOPS))
		}
		if v.BPS < 0 || v.BPS > int64(spec.MaxDiskBPS) {
			errs.Add(p+"bps", fmt.Sprintf("want 0 (no cap) to %d bytes per second, got %d", int64(spec.MaxDiskBPS), v.BPS))
		}
		if v.SnapshotOf != "" {
			if why := spec.ValidVolumeName(v.SnapshotOf); why != "" {
				errs.Add(p+"snapshot_of", why)
			} else if made[v.SnapshotOf] {
				errs.Add(p+"snapshot_of", fmt.Sprintf("%q is a volume this grid makes: snapshot_of names an existing volume of the project", v.SnapshotOf))
			}
		}
	}
}

// validateParts checks every part with the rules of its kind, its
// duration or the grid's filled in (the grid's lease is checked once, at
// the grid), and the limits of a grid.
func validateParts(errs *spec.FieldErrors, g model.GridSpec, images spec.ImageLookup) {
	switch {
	case len(g.Clusters) == 0 && len(g.Workspaces) == 0:
		errs.Add("clusters", "a grid needs at least one cluster or workspace")
	case len(g.Clusters) > MaxClusters:
		errs.Add("clusters", fmt.Sprintf("at most %d clusters allowed, got %d", MaxClusters, len(g.Clusters)))
	case len(g.Workspaces) > MaxWorkspaces:
		errs.Add("workspaces", fmt.Sprintf("at most %d workspaces allowed, got %d", MaxWorkspaces, len(g.Workspaces)))
	}
	if len(g.Clusters) > MaxClusters || len(g.Workspaces) > MaxWorkspaces {
		return
	}
	// A linked part without the grid's duration: the grid's error says
	// so; a stand-in keeps the part's check from saying it again.
	fill := func(lease *model.LeaseSpec, d model.Duration) model.Duration {
		switch {
		case d != 0:
			return d
		case g.Duration != 0:
			return g.Duration
		case lease == nil:
			return model.Duration(time.Hour)
		}
		return 0
	}
	total := len(g.Workspaces)
	for i, c := range g.Clusters {
		c.Duration = fill(c.Lease, c.Duration)
		errs.AddAll(fmt.Sprintf("clusters[%d].", i), spec.ValidateCluster(c, images))
		total += c.Size()
	}
	for i, w := range g.Workspaces {
		w.Duration = fill(w.Lease, w.Duration)
		errs.AddAll(fmt.Sprintf("workspaces[%d].", i), spec.Validate(w, images))
	}
	if total > MaxMembers {
		errs.Add("clusters", fmt.Sprintf("%d workspaces in all (the clusters' members and the single workspaces), at most %d allowed", total, MaxMembers))
	}
}

// validateNames checks that cluster names are unique, workspace names
// are unique, and no workspace of the grid (member or single) has the name
// of another.
func validateNames(errs *spec.FieldErrors, g model.GridSpec) {
	total := len(g.Workspaces)
	for _, c := range g.Clusters {
		total += c.Size()
	}
	if total > MaxMembers || len(g.Clusters) > MaxClusters || len(g.Workspaces) > MaxWorkspaces {
		return // said already; too many names to list
	}
	clusters := map[string]int{}
	for i, c := range g.Clusters {
		if j, dup := clusters[c.Name]; dup && c.Name != "" {
			errs.Add(fmt.Sprintf("clusters[%d].name", i), fmt.Sprintf("%q is used by clusters[%d]", c.Name, j))
		} else {
			clusters[c.Name] = i
		}
	}
	names := map[string]string{} // name -> who has it, for errors
	for i, c := range g.Clusters {
		for j, r := range c.Roles {
			field := fmt.Sprintf("clusters[%d].roles[%d]", i, j)
			for k := range min(max(r.Count, 0), spec.MaxRoleCount) {
				name := model.MemberName(c.Name, r.Name, k)
				if o, dup := names[name]; dup {
					errs.Add(field+".name", fmt.Sprintf("member %s would have the name of %s", name, o))
					break // one per role is enough
				}
				names[name] = fmt.Sprintf("a member of clusters[%d] (%s, role %s)", i, c.Name, r.Name)
			}
		}
	}
	for i, w := range g.Workspaces {
		if w.Name == "" {
			continue
		}
		if o, dup := names[w.Name]; dup {
			errs.Add(fmt.Sprintf("workspaces[%d].name", i), fmt.Sprintf("%q is the name of %s", w.Name, o))
			continue
		}
		names[w.Name] = fmt.Sprintf("workspaces[%d]", i)
	}
}

// attachment is one part's mount of a volume.
type attachment struct {
	field    string // "clusters[0].roles[1].volumes[0]"
	readOnly bool
}

// validateWriters checks that each volume the parts attach has one
// writer and no reader, or readers only (as the control plane requires
// of volumes attached to workspaces: a filesystem written by one guest is
// not read safely by another), and that no member's scratch volume has
// the name of a volume of the grid.
func validateWriters(errs *spec.FieldErrors, g model.GridSpec) {
	byName := map[string][]attachment{}
	var order []string
	add := func(name string, a attachment) {
		if _, ok := byName[name]; !ok {
			order = append(order, name)
		}
		byName[name] = append(byName[name], a)
	}
	made := map[string]int{}
	for i, v := range g.Volumes {
		if _, dup := made[v.Name]; !dup {
			made[v.Name] = i
		}
	}
	for i, c := range g.Clusters {
		for j, r := range c.Roles {
			if r.Count <= 0 {
				continue // no member attaches anything
			}
			for k, m := range r.Volumes {
				add(m.Name, attachment{fmt.Sprintf("clusters[%d].roles[%d].volumes[%d]", i, j, k), m.ReadOnly})
			}
			if r.Scratch != nil && r.Count <= spec.MaxRoleCount {
				for k := range r.Count {
					name := model.ScratchName(c.Name, r.Name, k)
					if v, clash := made[name]; clash {
						errs.Add(fmt.Sprintf("clusters[%d].roles[%d].scratch", i, j), fmt.Sprintf("member %d's scratch volume would be %s, the name of volumes[%d]", k, name, v))
						break
					}
				}
			}
		}
	}
	for i, w := range g.Workspaces {
		for k, m := range w.Volumes {
			add(m.Name, attachment{fmt.Sprintf("workspaces[%d].volumes[%d]", i, k), m.ReadOnly})
		}
	}
	for _, name := range order {
		var writers, readers []string
		for _, a := range byName[name] {
			if a.readOnly {
				readers = append(readers, a.field)
			} else {
				writers = append(writers, a.field)
			}
		}
		switch {
		case len(writers) > 1:
			for _, w := range writers[1:] {
				errs.Add(w+".read_only", fmt.Sprintf("volume %q is also attached writable by %s: a volume has one writer, or readers only (set read_only: true, or use another volume)", name, writers[0]))
			}
		case len(writers) == 1 && len(readers) > 0:
			errs.Add(writers[0]+".read_only", fmt.Sprintf("volume %q is attached writable here and read-only by %s: a volume has one writer, or readers only (a filesystem written by one guest is not read safely by another)", name, listShort(readers)))
		}
	}
}

// listShort joins up to four items with ", ", then says how many more.
func listShort(items []string) string {
	const limit = 4
	if len(items) <= limit {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:limit], ", ") + fmt.Sprintf(" and %d more", len(items)-limit)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
