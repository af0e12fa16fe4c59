package calendar

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"vgrid/internal/model"
)

// Network volumes in the calendar's model.
//
// A volume is a disk a storage host serves over the network; it lives on
// one host's disk until it is removed. The calendar counts it as a
// permanent allocation of that host's disk: from the moment it is placed
// (or added), the host's disk as the slot table counts it is smaller by
// the volume's size, for every later placement of leases (admissions,
// starts from the queue, resumes, moves, resizes, extensions). A lease
// whose members ask for disk is then placed elsewhere or refused; a
// refusal on a host with volumes names its disk as the slot table counts
// it (Refusal.Capacity), and VolumesOn lists what takes the rest.
//
// Volumes are durable state that the caller stores itself (model.Volume),
// so Snapshot and Restore do not carry them: after Restore the caller adds
// each stored volume again with AddVolume, which gives the same decisions
// as before the restart.

// Volume is a network volume on a host's disk.
type Volume struct {
	// Name identifies the volume across projects: "project/name".
	Name    string
	Project string
	Size    model.ByteSize
	// Host is the host whose disk holds it.
	Host string
}

// ErrNoVolumeRoom is what a *VolumeRefusal wraps: no eligible host has
// the disk a volume needs.
var ErrNoVolumeRoom = errors.New("no room for volume")

// VolumeRefusal says why a volume could not be placed or grown: the size
// it needs, and the host with the most disk free for it (the one asked
// for, if one was) with that free disk, the volumes on it and the leases
// whose disk holds it at its fullest moment from now on.
type VolumeRefusal struct {
	Volume string
	// Size is the disk asked for: the volume's size, or the growth of a
	// resize.
	Size model.ByteSize
	// Host is the eligible host with the most free disk (or the host
	// asked for); empty when no host is eligible.
	Host string
	// Free is the disk free for volumes on Host at its fullest moment
	// from now on.
	Free model.ByteSize
	// Volumes names the volumes on Host; Leases the leases holding disk
	// on Host at some time from now on.
	Volumes, Leases []string
	// Detail says which hosts were eligible, or why none is.
	Detail string
}

func (r *VolumeRefusal) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "volume %s: no room for %s", r.Volume, r.Size.Human())
	switch {
	case r.Host == "":
		fmt.Fprintf(&b, ": %s", r.Detail)
		return b.String()
	default:
		fmt.Fprintf(&b, ": the most disk free is %s on host %s", r.Free.Human(), r.Host)
	}
	var held []string
	if len(r.Volumes) > 0 {
		held = append(held, "volumes "+strings.Join(r.Volumes, ", "))
	}
	if len(r.Leases) > 0 {
		held = append(held, "leases "+strings.Join(r.Leases, ", "))
	}
	if len(held) > 0 {
		fmt.Fprintf(&b, " (disk held by %s)", strings.Join(held, "; "))
	}
	if r.Detail != "" {
		fmt.Fprintf(&b, "; %s", r.Detail)
	}
	return b.String()
}

func (r *VolumeRefusal) Unwrap() error { return ErrNoVolumeRoom }

func validVolume(v Volume) error {
	switch {
	case v.Name == "":
		return fmt.Errorf("volume: name: empty: %w", ErrInvalid)
	case v.Size <= 0:
		return fmt.Errorf("volume %s: size: %d bytes, want more than 0: %w", v.Name, int64(v.Size), ErrInvalid)
	}
	return nil
}

// volDisk is the disk h's volumes take.
func (h *host) volDisk() int64 {
	var n int64
	for _, v := range h.volumes {
		n += int64(v.Size)
	}
	return n
}

// setDiskCap makes h's disk, as the slot table counts it, its capacity
// (times the disk overcommit ratio) less its volumes.
func (c *Calendar) setDiskCap(h *host) {
	h.cap[dDisk] = overcommit(int64(h.Capacity.Disk), c.pol.Overcommit.ratios()[dDisk]) - h.volDisk()
}

// volumeFree is the disk free for a volume on h from t on: what the slot
// table leaves at h's fullest moment from t on, and never more than the
// real disk its volumes leave (volumes are not overcommitted).
func volumeFree(h *host, t int64) int64 {
	return min(h.cap[dDisk]-h.tl.max(t, math.MaxInt64)[dDisk], int64(h.Capacity.Disk)-h.volDisk())
}

// diskLeases names the leases holding disk on h at some time from t on.
func diskLeases(h *host, t int64) []string {
	var out []string
	for _, a := range h.allocs {
		if a.to > t && a.v[dDisk] > 0 && !slices.Contains(out, a.l.ID) {
			out = append(out, a.l.ID)
		}
	}
	sort.Strings(out)
	return out
}

func volNames(h *host) []string {
	out := make([]string, len(h.volumes))
	for i, v := range h.volumes {
		out[i] = v.Name
	}
	sort.Strings(out)
	return out
}

// findVolume returns the host holding the volume named name (live or
// removed) and its index there; nil if there is none.
func (c *Calendar) findVolume(name string) (*host, int) {
	for _, h := range c.hosts {
		for i, v := range h.volumes {
			if v.Name == name {
				return h, i
			}
		}
	}
	return nil, -1
}

// hostNamed returns the live host of that name, else the last removed
// one; nil if the calendar never had it.
func (c *Calendar) hostNamed(name string) *host {
	if h := c.byName[name]; h != nil {
		return h
	}
	for i := len(c.hosts) - 1; i >= 0; i-- {
		if c.hosts[i].Name == name {
			return c.hosts[i]
		}
	}
	return nil
}

// adoptVolumes moves the volumes of a removed host to the live host of
// the same name, once one was added again (AddHost), and counts them in
// its disk. It reports whether it moved any.
func (c *Calendar) adoptVolumes() bool {
	moved := false
	for _, old := range c.hosts {
		if !old.down || len(old.volumes) == 0 {
			continue
		}
		h := c.byName[old.Name]
		if h == nil || h == old {
			continue
		}
		h.volumes = append(h.volumes, old.volumes...)
		old.volumes = nil
		c.setDiskCap(h)
		moved = true
	}
	return moved
}

// volumesChanged brings the free-now index, the allocation index, the
// queue's memos and plans up to date after a host's disk changed.
func (c *Calendar) volumesChanged() {
	c.reindex()
}

// volumeHosts returns the hosts a volume may be placed on, in name order:
// live, not cordoned, with disk; and, when any live host serves volumes
// (Host.Storage), only those. why says why there is none.
func (c *Calendar) volumeHosts() (hs []*host, why string) {
	storage := false
	for _, h := range c.order {
		storage = storage || h.Storage
	}
	for _, h := range c.order {
		if !h.Cordoned && h.Capacity.Disk > 0 && (!storage || h.Storage) {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		switch {
		case len(c.order) == 0:
			why = "no host"
		case storage:
			why = "every host that serves volumes is cordoned or has no disk"
		default:
			why = "every host is cordoned or has no disk"
		}
	}
	return hs, why
}

// PlaceVolume chooses v's host and records v there (v.Host is ignored):
// the host want when an admin asked for one, else, of the hosts a volume
// may go on (live, not cordoned, with disk; when any live host serves
// volumes, Host.Storage, only those), the one with the most disk free at
// its fullest moment from now on, by name on a tie. The disk free counts
// the volumes there and every admitted lease's disk at any time from now
// on, and is never more than the host's real disk less its volumes. From
// now on the volume takes its size of the host's disk for every
// placement of leases, until RemoveVolume.
//
// A volume that fits nowhere (or not on want) is a *VolumeRefusal (it
// wraps ErrNoVolumeRoom) naming the size, the host with the most free
// disk and how much, and the volumes and leases holding that host's
// disk. An empty name or a size not above 0 is an error wrapping
// ErrInvalid, a name the calendar has already one wrapping ErrExists,
// want not a live host one wrapping ErrUnknownHost, and want cordoned,
// without disk or not serving volumes (when some host does) one wrapping
// ErrInvalid.
func (c *Calendar) PlaceVolume(v Volume, want string, now time.Time) (string, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	if err := validVolume(v); err != nil {
		return "", err
	}
	if c.adoptVolumes() {
		c.volumesChanged()
	}
	if h, _ := c.findVolume(v.Name); h != nil {
		return "", fmt.Errorf("volume %s: on host %s already: %w", v.Name, h.Name, ErrExists)
	}
	hs, why := c.volumeHosts()
	var best *host
	if want != "" {
		w := c.byName[want]
		if w == nil {
			return "", fmt.Errorf("volume %s: host %s: %w", v.Name, want, ErrUnknownHost)
		}
		if !slices.Contains(hs, w) {
			reason := "it is not a storage host (it serves no volumes)"
			switch {
			case w.Cordoned:
				reason = "it is cordoned"
			case w.Capacity.Disk <= 0:
				reason = "it has no disk"
			}
			return "", fmt.Errorf("volume %s: host %s: %s: %w", v.Name, want, reason, ErrInvalid)
		}
		best = w
	} else {
		for _, h := range hs {
			if best == nil || volumeFree(h, t) > volumeFree(best, t) {
				best = h
			}
		}
	}
	if best == nil {
		return "", &VolumeRefusal{Volume: v.Name, Size: v.Size, Detail: why}
	}
	if free := volumeFree(best, t); free < int64(v.Size) {
		r := &VolumeRefusal{Volume: v.Name, Size: v.Size, Host: best.Name, Free: model.ByteSize(max(free, 0)),
			Volumes: volNames(best), Leases: diskLeases(best, t)}
		if want == "" {
			r.Detail = fmt.Sprintf("%d eligible hosts", len(hs))
		} else {
			r.Detail = "the host asked for"
		}
		return "", r
	}
	v.Host = best.Name
	best.volumes = append(best.volumes, v)
	c.setDiskCap(best)
	c.volumesChanged()
	return best.Name, nil
}

// AddVolume records a volume that exists on v.Host, as the caller stored
// it: after Restore (Snapshot does not carry volumes), or a volume placed
// outside the calendar. Its host's disk is smaller by its size from now
// on, even where admitted leases hold more than is left (they keep their
// holds; only what is placed afterwards sees the smaller disk). v.Host
// may be a removed host: the volume is then listed there, unavailable,
// and counts in the disk of a host added again under that name. An
// empty name, an empty host or a size not above 0 is an error wrapping
// ErrInvalid, a name the calendar already has one wrapping ErrExists, a
// host the calendar never had one wrapping ErrUnknownHost.
func (c *Calendar) AddVolume(v Volume, now time.Time) error {
	c.rev++ // see Revision
	c.clamp(now)
	if err := validVolume(v); err != nil {
		return err
	}
	if v.Host == "" {
		return fmt.Errorf("volume %s: host: empty: %w", v.Name, ErrInvalid)
	}
	if h, _ := c.findVolume(v.Name); h != nil {
		return fmt.Errorf("volume %s: on host %s already: %w", v.Name, h.Name, ErrExists)
	}
	h := c.hostNamed(v.Host)
	if h == nil {
		return fmt.Errorf("volume %s: host %s: %w", v.Name, v.Host, ErrUnknownHost)
	}
	h.volumes = append(h.volumes, v)
	c.adoptVolumes()
	if !h.down {
		c.setDiskCap(h)
	}
	c.volumesChanged()
	return nil
}

// ResizeVolume grows a volume to size from now on, if its host's disk
// holds the growth at its fullest moment from now on (else a
// *VolumeRefusal whose Size is the growth). A smaller size is an error
// wrapping ErrInvalid (volumes only grow), as is a volume on a removed
// host; the same size changes nothing; an unknown volume is an error
// wrapping ErrNotFound.
func (c *Calendar) ResizeVolume(name string, size model.ByteSize, now time.Time) error {
	c.rev++ // see Revision
	t := c.clamp(now)
	if c.adoptVolumes() {
		c.volumesChanged()
	}
	h, i := c.findVolume(name)
	switch {
	case h == nil:
		return fmt.Errorf("resize volume %s: %w", name, ErrNotFound)
	case size < h.volumes[i].Size:
		return fmt.Errorf("resize volume %s: size: %s is smaller than its %s; volumes only grow: %w", name, size, h.volumes[i].Size, ErrInvalid)
	case size == h.volumes[i].Size:
		return nil
	case h.down:
		return fmt.Errorf("resize volume %s: its host %s was removed: %w", name, h.Name, ErrInvalid)
	}
	grow := size - h.volumes[i].Size
	if free := volumeFree(h, t); free < int64(grow) {
		return &VolumeRefusal{Volume: name, Size: grow, Host: h.Name, Free: model.ByteSize(max(free, 0)),
			Volumes: volNames(h), Leases: diskLeases(h, t),
			Detail: fmt.Sprintf("growing from %s to %s on its host", h.volumes[i].Size, size)}
	}
	h.volumes[i].Size = size
	c.setDiskCap(h)
	c.volumesChanged()
	return nil
}

// RemoveVolume forgets a volume: its host's disk is free of it from now
// on (the queue is looked at again at the next Advance). An unknown
// volume is an error wrapping ErrNotFound.
func (c *Calendar) RemoveVolume(name string, now time.Time) error {
	c.rev++ // see Revision
	c.clamp(now)
	c.adoptVolumes()
	h, i := c.findVolume(name)
	if h == nil {
		return fmt.Errorf("remove volume %s: %w", name, ErrNotFound)
	}
	h.volumes = slices.Delete(h.volumes, i, i+1)
	if !h.down {
		c.setDiskCap(h)
	}
	c.volumesChanged()
	return nil
}

// Volumes returns every volume the calendar knows, by name. A volume
// whose host was removed (RemoveHost) stays listed with that host: it is
// unavailable until a host of that name is added again.
func (c *Calendar) Volumes() []Volume {
	var out []Volume
	for _, h := range c.hosts {
		out = append(out, h.volumes...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// VolumesOn returns the volumes on the host named host, by name: what
// takes its disk besides the leases (for explaining a refusal whose
// Resource is disk).
func (c *Calendar) VolumesOn(host string) []Volume {
	var out []Volume
	for _, h := range c.hosts {
		if h.Name == host {
			out = append(out, h.volumes...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// VolumeCopyTime is the time to copy a volume from its host to the host
// to at the slower of the two hosts' StageRate, in whole seconds rounded
// up; 0 when either rate is unknown (0), or the volume or host is.
func (c *Calendar) VolumeCopyTime(name, to string) time.Duration {
	h, i := c.findVolume(name)
	d := c.hostNamed(to)
	if h == nil || d == nil {
		return 0
	}
	if h.StageRate <= 0 || d.StageRate <= 0 {
		return 0
	}
	return time.Duration(xfer(int64(h.volumes[i].Size), min(h.StageRate, d.StageRate)))
}
