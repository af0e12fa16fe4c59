// Package calendar is vgrid's lease calendar: every host's capacity over
// time (a slot table of cpu, memory, disk and bandwidth per host) and every
// lease's slots in it. Leases are immediate (now or refused), best effort
// (queued, backfilled, preemptible), advance reservations (a guaranteed
// window) or deadline leases (the earliest start that ends in time). A
// lease has one or more members, placed all or nothing.
//
// The package is pure: no I/O, no wall clock, no goroutines, no randomness.
// Time is an argument (now), and the same calls give the same answers, so
// the server and the simulator run the same code. The caller feeds it
// (Submit, Cancel, Finish, Extend, AddHost, RemoveHost) and carries out the
// Actions that Advance returns (start, stage, suspend, resume, requeue,
// end); NextEvent tells a virtual clock where to jump.
//
// Admission answers say why: a *Refusal names the short resource, the host
// that came closest and the window, the leases holding it, and the
// earliest start at which the lease would fit. Reservations count the time
// to stage their image and to suspend the best-effort leases that must
// make room; once admitted, their window never moves. See README.md for the
// flow and the data structures.
package calendar
