// Package e2e tests vgrid as a user runs it: the real vgrid binary (vgrid
// up with its embedded store and local agent), real QEMU guests built from
// the real guest image, driven through the CLI.
package e2e
