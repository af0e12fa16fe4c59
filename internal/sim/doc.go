// Package sim replays a workload trace against a modelled grid in virtual
// time, with the very calendar the server uses (package calendar): the
// trace's requests are submitted at their arrival times, the calendar's
// actions (start, suspend, resume, requeue, end) are carried out on the
// model, a live migration (migrate, under Policy.Migrate) ends, done, after
// the time the calendar allows it (its memory over the hosts' migration
// rate, plus setup) and the VM runs on its new host from then, leases that
// end before their requested time are finished early, and every run of
// every VM is recorded for metrics and plots. Result.Leases says what
// happened to each lease (LeaseResult: start, end, hosts, final state and
// reason, suspensions, image staging), written as CSV or JSON by
// WriteLeasesCSV and WriteLeasesJSON.
//
// A lease's recorded start is its start action (its guests' boot comes
// before its run) and its end its run's end (the end action, or its early
// finish); under the calendar's Policy.ShutdownTime its VMs' runs (the
// segments utilization counts) go on to the end of their shutdown, while
// their host is still held, as they begin with the boot.
//
// Like the calendar, the engine is pure: no I/O, no wall clock, no
// goroutines; the same input gives the same result. Reading traces and
// writing plots are the caller's business. A caller may stop a run
// (Config.Context: Run returns an *Interrupted) and follow it
// (Config.Progress); neither changes what a finished run computes.
package sim
