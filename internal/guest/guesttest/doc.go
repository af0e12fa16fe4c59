// Package guesttest gives other packages' tests a ready guest image: Image
// builds the static vgrid-guest-agent and the image once per set of inputs
// into a cache directory that all test binaries share (guarded by a file
// lock, so parallel "go test" packages do not race), and RequireQEMU skips
// a test on machines without QEMU or the Debian cloud kernel.
package guesttest
