// Package trace reads workload traces into one neutral lease type for the
// simulator. It knows three formats:
//
//   - SWF, the Standard Workload Format of the Parallel Workloads Archive
//     (one job per line, 18 numeric fields, ';' comments). Every job becomes
//     a best-effort lease the way Haizea mapped them: requested nodes from
//     field 8 (else the allocated processors of field 5), requested time from
//     field 9, real run time from field 4 capped at the requested time, one
//     CPU and 1,024 MiB per VM unless SWFOptions says otherwise. Jobs with
//     no requested time, and jobs cancelled while queued, are skipped
//     (Haizea 1.0); SWFOptions.RuntimeAsRequested and KeepCancelled keep
//     them instead (NASA-iPSC and the Lublin model have no requested times
//     at all; Haizea's 2008 reader kept cancelled jobs, with a queue timeout
//     that becomes Lease.CancelAfter). ReadSWFStats reports how many jobs
//     were skipped and why.
//   - LWF 1.0, Haizea's XML lease workload format (<lease-workload>), which
//     carries best-effort, advance-reservation, immediate and deadline leases.
//   - Haizea's older space-separated AR injection format (ten fields per line:
//     reqTime startTime duration realDuration numNodes CPU mem disk vmImage
//     vmImageSize, in seconds; a start time of -1 means best-effort).
//
// Open picks the reader from the file name (.swf, .lwf or .xml, optionally
// followed by .gz) and, for .lwf, from the first byte: '<' is XML, anything
// else the injection format.
//
// All times are offsets from the start of the trace. Readers return leases
// sorted by submission time (ties keep file order). They never panic;
// malformed input gives an error naming the line and, where it applies, the
// field. Submission times before the trace start (the Haizea injection files
// have a few) are clamped to 0, which is what Haizea did by submitting every
// request whose time had come at the first tick; requested start times are
// kept as written, even when negative, so the scheduler sees the same
// impossible reservation that Haizea saw.
//
// An LWF file's <site> element, the grid it was written for, is read by
// ReadLWFWorkload and OpenWorkload (Site). Dir finds the shared traces
// directory for benchmarks and tests ($VGRID_TRACES, else shared/traces
// above the working directory).
//
// The package imports only the standard library and does no I/O apart from
// Open reading the file it is given and Dir looking for the directory.
package trace
