// Package image builds vgrid's reproducible guest image from what a Debian
// host already has: the cloud kernel (its bzImage is unpacked into the ELF
// vmlinux so that QEMU boots it directly through the PVH entry on
// -M microvm, skipping decompression under TCG), its virtio, button, evdev
// and isofs modules, a static busybox and the static vgrid-guest-agent. It
// writes vmlinux, a gzip'ed newc initrd that loads the modules and switches
// to the root disk, a raw ext4 rootfs.img made by mkfs.ext4 -d (no loop
// mounts, no root needed beyond reading the inputs), and image.json
// describing them as a model.Image. Timestamps, owners, UUIDs and hash
// seeds are fixed, so two builds from the same inputs are byte-identical.
package image
