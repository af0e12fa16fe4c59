package spec

import (
	"fmt"
	"path"
	"strings"

	"vgrid/internal/model"
)

// Limits on network volumes that the specs' checks enforce.
const (
	// MaxVolumes is the most volumes one workspace attaches (a role's,
	// its scratch volume included).
	MaxVolumes = 8
	// MinVolumeSize and MaxVolumeSize bound a volume's size.
	MinVolumeSize = 16 * model.MiB
	MaxVolumeSize = 16 * model.TiB
	// MaxMountLen bounds a mount path.
	MaxMountLen = 256
)

// reservedMounts are where no volume may be mounted: the guest's system
// directories and vgrid's own (and anything under them).
var reservedMounts = []string{"/proc", "/sys", "/dev", "/run/vgrid"}

// ValidVolumeName reports why name cannot name a volume ("" when it can):
// the rules of a workspace's name.
func ValidVolumeName(name string) string {
	errs := &FieldErrors{}
	validateName(errs, name)
	if errs.Len() > 0 {
		return errs.list[0].Reason
	}
	return ""
}

// ValidVolumeSize reports why size cannot be a volume's ("" when it can).
func ValidVolumeSize(size model.ByteSize) string {
	switch {
	case size < MinVolumeSize:
		return fmt.Sprintf("must be at least %s, got %s", MinVolumeSize, size)
	case size > MaxVolumeSize:
		return fmt.Sprintf("must be at most %s, got %s", MaxVolumeSize, size)
	case size%512 != 0:
		return fmt.Sprintf("must be a whole number of 512-byte sectors, got %d bytes", int64(size))
	}
	return ""
}

// ValidMount reports why p cannot be a volume's mount point ("" when it
// can): an absolute, clean path of one line, not "/" and not under
// /proc, /sys, /dev or /run/vgrid.
func ValidMount(p string) string {
	switch {
	case p == "":
		return "required: want an absolute path"
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("want an absolute path, got %s", quoteShort(p))
	case len(p) > MaxMountLen:
		return fmt.Sprintf("at most %d bytes allowed, got %d", MaxMountLen, len(p))
	case strings.ContainsAny(p, "\x00\n\r\t ,"):
		return "must not contain spaces, commas, tabs or line breaks"
	case path.Clean(p) != p:
		return fmt.Sprintf("want a clean path (%s), got %s", path.Clean(p), quoteShort(p))
	case p == "/":
		return "must not be / (the root file system)"
	}
	for _, r := range reservedMounts {
		if p == r || strings.HasPrefix(p, r+"/") {
			return fmt.Sprintf("must not be %s or under it (reserved for the system)", r)
		}
	}
	return ""
}

// validateVolumes checks a workspace's (or a role's) volume mounts, at
// field prefix ("volumes" or "roles[0].volumes"): names, mount points, no
// name nor mount point twice, no mount point inside another. extra are
// mount points already taken (a role's scratch volume), by field.
func validateVolumes(errs *FieldErrors, prefix string, vols []model.VolumeMount, extra map[string]string) {
	if len(vols)+len(extra) > MaxVolumes {
		errs.add(prefix, fmt.Sprintf("at most %d volumes allowed, got %d", MaxVolumes, len(vols)+len(extra)))
		return
	}
	names := map[string]int{}
	mounts := map[string]string{}
	for f, m := range extra {
		mounts[m] = f
	}
	for i, v := range vols {
		p := fmt.Sprintf("%s[%d].", prefix, i)
		if why := ValidVolumeName(v.Name); why != "" {
			errs.add(p+"name", why)
		} else if j, dup := names[v.Name]; dup {
			errs.add(p+"name", fmt.Sprintf("volume %q is already attached by %s[%d]", v.Name, prefix, j))
		} else {
			names[v.Name] = i
		}
		if why := ValidMount(v.Mount); why != "" {
			errs.add(p+"mount", why)
			continue
		}
		if f, dup := mounts[v.Mount]; dup {
			errs.add(p+"mount", fmt.Sprintf("%s is already the mount point of %s", v.Mount, f))
			continue
		}
		for m, f := range mounts {
			if strings.HasPrefix(v.Mount, m+"/") || strings.HasPrefix(m, v.Mount+"/") {
				errs.add(p+"mount", fmt.Sprintf("%s and the mount point of %s (%s) are inside one another", v.Mount, f, m))
				break
			}
		}
		mounts[v.Mount] = p + "mount"
	}
}

// validateScratch checks the scratch volume of role r of cluster at
// prefix ("roles[0].scratch"): its size, its mount, and that its members'
// volume names ("<member>-scratch") are names a volume can have.
func validateScratch(errs *FieldErrors, prefix, cluster string, r model.ClusterRole) {
	s := r.Scratch
	if why := ValidVolumeSize(s.Size); why != "" {
		errs.add(prefix+".size", why)
	}
	if why := ValidMount(s.Mount); why != "" {
		errs.add(prefix+".mount", why)
	}
	if r.Count > 0 && dnsLabel.MatchString(cluster) && dnsLabel.MatchString(r.Name) {
		// The longest of them, the last member's.
		last := model.ScratchName(cluster, r.Name, r.Count-1)
		if len(last) > maxNameLen {
			errs.add(prefix, fmt.Sprintf("the members' scratch volumes would have names such as %s, longer than %d characters: shorten the cluster's or the role's name by %d", last, maxNameLen, len(last)-maxNameLen))
		}
	}
}

// normalizeVolumes makes an empty list nil.
func normalizeVolumes(v []model.VolumeMount) []model.VolumeMount {
	if len(v) == 0 {
		return nil
	}
	return v
}

// validateRoleVolumes checks the volumes and scratch volume of a role of
// cluster (p is "roles[i]."): a writable volume is one member's, so a role of more
// than one member attaches volumes read-only.
func validateRoleVolumes(errs *FieldErrors, p, cluster string, r model.ClusterRole) {
	var extra map[string]string
	if s := r.Scratch; s != nil {
		validateScratch(errs, p+"scratch", cluster, r)
		if ValidMount(s.Mount) == "" {
			extra = map[string]string{p + "scratch.mount": s.Mount}
		}
	}
	validateVolumes(errs, p+"volumes", r.Volumes, extra)
	if r.Count > 1 {
		for i, v := range r.Volumes {
			if !v.ReadOnly {
				errs.add(fmt.Sprintf("%svolumes[%d].read_only", p, i), fmt.Sprintf("a role of %d members attaches volume %q read-only (a writable volume is one workspace's): set read_only: true, or use scratch for a volume per member", r.Count, v.Name))
			}
		}
	}
}
