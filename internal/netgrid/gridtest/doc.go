// Package gridtest starts a grid of real hosts on this machine for tests:
// `vgrid up --hosts N` in a temporary data directory, each host a network
// namespace of its own (unique names and subnet per test process), with
// an admin client and handles to freeze, thaw, kill and restart a host.
// It skips only where the machine lacks root, namespaces or QEMU
// (internal/testenv), and cleans everything up when the test ends.
package gridtest
