// Package gridplan plans a virtual grid against a lease calendar without
// booking anything: on a clone of the calendar, it looks for the earliest
// window, from the start asked for and forward in time, in which every
// part of the grid that shares the grid's lease is admitted as a
// reservation at one start (linked leases: all or nothing), the parts
// with leases of their own as they are, and the grid's new volumes placed
// first. It says where each member goes, what the grid would do to the
// leases already there (suspend, migrate, requeue, delay, and by how
// much), and, when the grid can never fit, what is short. It is pure, as
// the calendar is: the server plans against the live calendar, the
// simulator against a modelled one, with the same code.
package gridplan
