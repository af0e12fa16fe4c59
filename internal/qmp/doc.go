// Package qmp is a small client of the QEMU Machine Protocol, shared by the
// QEMU driver (internal/hypervisor/qemu) and the storage daemon's
// supervisor (internal/storage): the greeting and capabilities
// negotiation, commands matched to their replies by id (with a file
// descriptor passed along where a command takes one), and events handed
// to a callback. Every blocking step has a deadline or follows a context,
// so a wedged QEMU cannot hang its caller; a command whose context ends
// stops waiting and its late reply is dropped by id. (QEMU serves one QMP
// client at a time on a socket; a second one waits unanswered.)
package qmp
