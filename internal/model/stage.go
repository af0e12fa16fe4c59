package model

import "time"

// Staging says the calendar asked for a workspace's image to be fetched
// into its hosts' caches ahead of its start (a reservation or deadline
// lease staging before its hold): the agents of Hosts fetch Image now, so
// that the guest boots from a cached image when the lease starts. It is
// cleared when the workspace starts (or its lease ends first).
type Staging struct {
	Image string `json:"image"`
	// Hosts are the hosts the lease stages on (for a cluster, those of all
	// its members; each member's own host is in the calendar's placement).
	Hosts []string `json:"hosts"`
	// Since is when the staging was due.
	Since time.Time `json:"since"`
}
