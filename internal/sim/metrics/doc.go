// Package metrics summarizes a simulation run from the records of its
// leases: utilization, waiting times, bounded slowdown, the time to finish
// the workload, advance-reservation admission and preemptions, plus a
// utilization time series for plotting.
//
// All times are offsets from the start of the trace (time.Duration), the
// same clock as package trace. The package is pure: no I/O, no wall clock.
//
// Definitions (Summarize):
//
//   - A record has run if it is not rejected and has at least one run
//     interval of positive length: its Segments, or [Start, End] when it
//     has none. Records that never ran (rejected, withdrawn, or still
//     queued when the run stopped) count in Leases only.
//   - The window is [first Submit of any record, last End of any record
//     that ran]; its length is SpanS.
//   - Utilization is the core-seconds used by records that ran (each
//     segment × CPUs, or Nodes × CPUs × (End − Start) without segments)
//     inside the window, divided by capacity × window length.
//   - Wait is Start − Submit of records that ran, excluding reservations
//     (whose start is fixed by the request, so their "wait" is only the
//     advance notice). Percentiles use the nearest-rank method.
//   - Bounded slowdown is max(1, (End − Submit) / max(run, 10 s)) over the
//     same records, where run is Real, or when Real is 0 the time covered by
//     the segments (or End − Start): suspended time counts as waiting.
//   - TotalCompletionS is the last End of a best-effort record that ran
//     (of any record that ran when there are no best-effort ones) minus the
//     first Submit of any record. This is Haizea's "time to complete all
//     best-effort leases": reservations end when they asked to whatever the
//     scheduler does, so including them would hide differences in how fast
//     the best-effort work drains; and measuring from the first submission
//     instead of 0 keeps idle time before a trace's first job out. For the
//     Haizea SDSC-BLUE subsets, which start at 0, the two agree.
//   - ARAccepted and ARRejected count reservation records with Accepted
//     and with Rejected set; Preemptions sums Record.Preemptions, and
//     Suspensions and Requeues its parts, when the records say them.
//   - Migrations sums Record.Migrations, the live migrations of running
//     VMs to other hosts that the calendar chose instead of a preemption
//     (Policy.Migrate), and MigrationS their total time (from the migrate
//     action to the move's end).
package metrics
