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
// (Submit, Cancel, Finish, Extend, Resize, BeginMove and EndMove,
// AddHost, RemoveHost) and carries out the Actions that Advance returns
// (start, stage, suspend, resume, requeue, migrate, end); NextEvent tells
// a virtual clock where to jump.
//
// A running lease's member can move to another host (BeginMove, then
// EndMove when the live migration is over: it holds both hosts in
// between) and change size (Resize: growth only where its host has room
// until the end of its hold, ResizeTarget for another host). Under
// Policy.Migrate, an admission that must displace a running best-effort
// lease live-migrates it to a host with room instead (ActMigrate, in time
// for the admission), and suspends it only where that is impossible.
//
// Admission answers say why: a *Refusal names the short resource, the host
// that came closest and the window, the leases holding it, and the
// earliest start at which the lease would fit. Reservations count the time
// to stage their image and to suspend the best-effort leases that must
// make room; once admitted, their window never moves. See README.md for the
// flow and the data structures.
//
// A best-effort lease that does not fit for its whole run may start in a
// gap before what needs its room, planned to be suspended in time
// (gaps.go); a lease to be suspended or requeued runs on instead when
// what it was to make room for goes away first (runon.go).
//
// # Ready at the start
//
// A lease's run is the time its guests are ready, not booting. For every
// fresh start (not a resume), of every kind, the image is staged, then
// the start action comes, then the guests' boot time (Host.BootTime), and
// only then the run: slots [T-stage-boot, end) (from T-boot for leases
// that stage ahead, below), a
// stage action at T-stage-boot, the start action at T-boot, the run
// [T, T+duration). A reservation's and a deadline lease's T is the start
// they were given, so they are ready at it and end when admitted (their
// hold just begins earlier, and preempted leases are gone by then). An
// immediate or best-effort lease starts at once (its start action when the
// image is staged) and its run counts from when its guests are ready,
// T = now+stage+boot: the user gets the whole duration asked for, and the
// slot table holds the host for the boot, as the host is really busy then.
// A resume has no boot (restoring a guest's memory is ResumeRate's time).
//
// Reservations and deadline leases, planned ahead, stage ahead: their
// image is fetched over [T-stage-boot, T-boot) while the host's slots
// stay free for other leases, and their hold begins at T-boot (the start
// action). The stage action still comes at T-stage-boot, and a
// reservation whose staging would have to begin before now is refused
// (ReasonTooSoon, naming the image, its size and the staging time).
// Several leases staging on one host at once are each modelled at the
// host's full StageRate.
//
// Stage and boot times are the worst over the lease's eligible hosts,
// since the window must be known before hosts are chosen (the start
// search and the victims' deadline depend on it): on a host that boots
// faster the guests are ready early. Boot times count in whole seconds,
// rounded up, and the hold's boot is durable (model.LeaseHold.Boot), so
// that a restored calendar acts at the same times. SetHostTimes feeds new
// measurements; they apply to what is planned afterwards only.
//
// # Shutting down
//
// Under Policy.ShutdownTime a run that ends is followed by its guests'
// shutdown, and the hold keeps its slots for it: [runTo, runTo+shutdown).
// Every placement of such a run counts it, so the next hold on the same
// slots begins after it. The end action comes at the run's end (the
// control plane stops the guests then), the slots are free at the hold's
// end; a lease's End is its run's end, and a deadline is met by it. A
// premature end (Finish) or the cancellation of a started lease shuts
// down from then. Suspensions, requeues and the source of a live
// migration have no shutdown. See shutdown.go.
package calendar
