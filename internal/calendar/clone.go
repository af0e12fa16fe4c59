package calendar

import "fmt"

// Clone returns an independent copy of the calendar: the same hosts (live
// and removed), leases, projects, volumes, clock and revision, making the
// same decisions from here on. A dry run (a plan) works on a clone and
// throws it away, so that nothing it tries touches the calendar itself.
func (c *Calendar) Clone() (*Calendar, error) {
	hosts := make([]Host, 0, len(c.order))
	for _, h := range c.order {
		hh := h.Host
		hh.volumes = nil
		hh.Labels = cloneLabels(h.Labels)
		hh.Images = append([]string(nil), h.Images...)
		hosts = append(hosts, hh)
	}
	cl, err := Restore(hosts, c.pol, c.Snapshot())
	if err != nil {
		return nil, fmt.Errorf("clone the calendar: %w", err)
	}
	now := tm(c.now)
	for _, v := range c.Volumes() {
		if err := cl.AddVolume(v, now); err != nil {
			return nil, fmt.Errorf("clone the calendar: %w", err)
		}
	}
	cl.rev = c.rev
	return cl, nil
}

// HasImage says whether the live host named host has image in its cache
// (a lease of that image placed there needs no staging).
func (c *Calendar) HasImage(host, image string) bool {
	h := c.byName[host]
	if h == nil {
		return false
	}
	for _, im := range h.Images {
		if im == image {
			return true
		}
	}
	return false
}
