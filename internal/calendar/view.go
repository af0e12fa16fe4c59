package calendar

import "vgrid/internal/model"

// HostCapacity returns a host's capacity as the calendar holds it (what
// it was given, without overcommit), for charts that divide booked
// resources by capacity: the live host of that name, else the last
// removed one; false if the calendar never had it. Read-only.
func (c *Calendar) HostCapacity(name string) (model.Resources, bool) {
	if h := c.byName[name]; h != nil {
		return h.Capacity, true
	}
	for i := len(c.hosts) - 1; i >= 0; i-- {
		if c.hosts[i].Name == name {
			return c.hosts[i].Capacity, true
		}
	}
	return model.Resources{}, false
}
