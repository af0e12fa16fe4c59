// Package benchkit holds what the benchmark harnesses under bench/ share,
// so that each command keeps only what it measures.
//
// Figures: Sorted (a sorted copy of durations), Stats (min, median and
// max), Median64 (the median of byte counts), MS and MiB (how the harnesses
// print a duration and a byte count).
//
// Set-up: WorkDir (the -dir flag or a temporary directory removed at the
// end), Logger (the QEMU driver's log at warning level, or at info level
// with -v), GuestImage (the tests' guest image, built and cached by
// internal/guest/guesttest, outside a test), LocalImage (an image record as
// a driver takes it), WaitGuest (a driver's guest up, its agent answering).
//
// Bare QEMU, the measure the driver is set against: HandOver boots a guest
// with a driver of its own and leaves it to the harness (the driver is
// closed, so QEMU's one QMP connection is free); a Handover then builds the
// driver's own QEMU command line for other paths (Command, RunQEMU), and
// Remove deletes the driver's files at the end. ReadPID, QEMUAlive and
// WaitPidfd follow QEMU processes; RemoveRuntimeFiles clears a process's
// pid file and sockets before the next one starts on the same paths.
//
// QMP is a minimal QMP client: one command at a time (Run, RunFD with a
// file descriptor passed along, Query), the MIGRATION event's statuses
// queued for WaitMigration.
package benchkit
