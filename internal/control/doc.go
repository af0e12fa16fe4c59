// Package control is the control plane's core: it owns the lease calendar,
// the stored leases and workspaces, and every operation on them (create,
// start, stop, delete, lease cancel, agent registration and reports, the
// calendar's actions). Each calendar decision is stored, with what it does
// to the workspaces, in one transaction before it is acted on or
// acknowledged (persist.go); after a restart the calendar is restored from
// those records. The rule "calendar action + workspace -> new workspace +
// event" is the pure function transition. internal/server is its HTTP
// face: routes, authentication, decoding, and the mapping of this
// package's errors to status codes.
package control
