#!/bin/sh
# build-cloud-image.sh OUT.qcow2
#
# Builds a minimal Debian bookworm cloud image: one ext4 partition on an
# MBR disk, booted by GRUB (i386-pc, so SeaBIOS boots it), the Debian cloud
# kernel, systemd, udev, dbus (logind handles the ACPI power button),
# systemd-networkd with DHCP on every Ethernet link, openssh-server,
# cloud-guest-utils (the root partition grows to fill the disk) and
# cloud-init reading only the NoCloud datasource (a "cidata" disk). It is
# what the QEMU driver's firmware boot path is tested with: an ordinary
# cloud image with no vgrid guest agent.
#
# Needs root, debootstrap, sfdisk (fdisk), losetup and partx (util-linux),
# mkfs.ext4 (e2fsprogs), qemu-img (qemu-utils) and a reachable Debian mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian). Nothing else of the
# host is used: GRUB is installed from inside the image.
#
# OUT is rebuilt only when it is missing or older than this script. The
# downloaded packages are kept in VGRID_CLOUD_IMAGE_DEBS (default
# /var/cache/vgrid-cloud-image/debs) so that a rebuild downloads nothing.
# Every mount and loop device made here is removed on any exit.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUT.qcow2" >&2
	exit 2
fi
OUT=$1
SELF=$(readlink -f "$0")
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBS=${VGRID_CLOUD_IMAGE_DEBS:-/var/cache/vgrid-cloud-image/debs}
SIZE=${VGRID_CLOUD_IMAGE_SIZE:-2G}

fresh() { [ -s "$OUT" ] && [ "$OUT" -nt "$SELF" ]; }

if fresh; then
	echo "$OUT is up to date"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "$0: needs root (loop devices, mounts, chroot)" >&2
	exit 1
fi
for tool in debootstrap sfdisk losetup partx blkid mkfs.ext4 fstrim qemu-img flock mountpoint chroot; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$0: $tool is missing (apt-get install debootstrap fdisk util-linux e2fsprogs qemu-utils)" >&2
		exit 1
	fi
done

mkdir -p "$(dirname "$OUT")" "$DEBS/partial"
# One build at a time per output; a build that waited finds the image made.
exec 9>"$OUT.lock"
flock 9
if fresh; then
	echo "$OUT is up to date"
	exit 0
fi

START=$(date +%s)
WORK=$(readlink -f "$(mktemp -d "${TMPDIR:-/var/tmp}/vgrid-cloud-image.XXXXXX")")
RAW=$WORK/disk.raw
MNT=$WORK/root
LOOP=
CHILD=

# bg runs a long step in the background and waits for it, so that a
# signal interrupts the wait at once and the cleanup runs (a shell runs
# traps only between foreground commands).
bg() {
	"$@" &
	CHILD=$!
	wait "$CHILD"
	st=$?
	CHILD=
	return $st
}

cleanup() {
	rc=$?
	set +e
	# Stop what still runs: the step being waited for, and anything
	# running inside the image (apt, dpkg and their children).
	if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null; fi
	for p in /proc/[0-9]*; do
		if [ "$(readlink "$p/root" 2>/dev/null)" = "$MNT" ]; then
			kill -9 "${p#/proc/}" 2>/dev/null
		fi
	done
	if [ -n "$CHILD" ]; then wait "$CHILD" 2>/dev/null; fi
	# Innermost first; a busy mount is detached lazily so that the loop
	# device can still go.
	for m in "$MNT/var/cache/apt/archives" "$MNT/dev" "$MNT/sys" "$MNT/proc" "$MNT"; do
		if mountpoint -q "$m" 2>/dev/null; then
			umount "$m" 2>/dev/null || umount -l "$m"
		fi
	done
	if [ -n "$LOOP" ]; then
		partx -d "$LOOP" 2>/dev/null
		losetup -d "$LOOP"
	fi
	rm -rf "$WORK"
	rm -f "$OUT.tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

step() { echo "[$(($(date +%s) - START))s] $*"; }

step "partitioning a $SIZE disk"
truncate -s "$SIZE" "$RAW"
# One bootable Linux partition from 1 MiB; the gap before it holds GRUB's
# core image.
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$RAW"
LOOP=$(losetup -f --show -P "$RAW")
PART=${LOOP}p1
# Partition scanning is asynchronous, and some kernels in containers do not
# do it at all: ask for the partition explicitly.
i=0
while [ ! -b "$PART" ]; do
	if [ $i -eq 0 ]; then partx -a "$LOOP" 2>/dev/null || true; fi
	i=$((i + 1))
	if [ $i -gt 50 ]; then
		echo "$0: $PART did not appear" >&2
		exit 1
	fi
	sleep 0.1
done
mkfs.ext4 -q -L root -m 0 "$PART"
UUID=$(blkid -s UUID -o value "$PART")
mkdir -p "$MNT"
mount "$PART" "$MNT"

step "debootstrap $SUITE (minbase) from $MIRROR"
bg debootstrap --variant=minbase --cache-dir="$DEBS" "$SUITE" "$MNT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
	tail -n 30 "$WORK/debootstrap.log" >&2
	exit 1
}

step "configuring"
# Mounts for the chroot. /dev is a tmpfs of its own (the host's is not
# bound, so nothing done in the chroot reaches it) with the few nodes
# packages use, the loop devices GRUB is installed to, and the by-uuid link
# that makes update-grub write root=UUID=.
mount -t tmpfs -o mode=755,size=1m vgrid-dev "$MNT/dev"
for n in null zero full random urandom tty; do cp -a "/dev/$n" "$MNT/dev/"; done
cp -a "$LOOP" "$PART" "$MNT/dev/"
ln -s /proc/self/fd "$MNT/dev/fd"
mkdir -p "$MNT/dev/pts" "$MNT/dev/disk/by-uuid"
ln -s "../../${PART##*/}" "$MNT/dev/disk/by-uuid/$UUID"
mount -t proc proc "$MNT/proc"
mount -t sysfs sysfs "$MNT/sys"
# debootstrap left its packages in the image's cache (and copies in $DEBS);
# apt uses $DEBS from here on.
rm -f "$MNT"/var/cache/apt/archives/*.deb
mount --bind "$DEBS" "$MNT/var/cache/apt/archives"

# No documentation, man pages or translations from here on.
cat >"$MNT/etc/dpkg/dpkg.cfg.d/01-vgrid-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
# Services are not started in the chroot.
printf '#!/bin/sh\nexit 101\n' >"$MNT/usr/sbin/policy-rc.d"
chmod 755 "$MNT/usr/sbin/policy-rc.d"
echo "deb $MIRROR $SUITE main" >"$MNT/etc/apt/sources.list"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$MNT/etc/apt/apt.conf.d/01-vgrid-norecommends"
printf 'Binary::apt::APT::Keep-Downloaded-Packages "true";\n' >"$MNT/etc/apt/apt.conf.d/01-vgrid-keep-debs"
echo debian >"$MNT/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$MNT/etc/hosts"
printf 'UUID=%s\t/\text4\terrors=remount-ro,discard\t0\t1\n' "$UUID" >"$MNT/etc/fstab"

# The initramfs needs only what finds the root disk: virtio-pci and
# virtio-blk (ext4 is built into the cloud kernel).
mkdir -p "$MNT/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' >"$MNT/etc/initramfs-tools/conf.d/vgrid.conf"
printf 'virtio_pci\nvirtio_blk\n' >>"$MNT/etc/initramfs-tools/modules"

# GRUB on the serial console, no menu delay, no os-prober.
mkdir -p "$MNT/etc/default/grub.d"
cat >"$MNT/etc/default/grub.d/50-vgrid.cfg" <<'EOF'
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
EOF

# cloud-init: only NoCloud (no probing of network metadata services).
mkdir -p "$MNT/etc/cloud/cloud.cfg.d"
cat >"$MNT/etc/cloud/cloud.cfg.d/90-vgrid.cfg" <<'EOF'
datasource_list: [NoCloud, None]
# Host keys are made at first boot (the image has none); ed25519 only,
# which is quick to make under TCG. The locale is C.UTF-8, which needs no
# generating.
ssh_genkeytypes: [ed25519]
locale: C.UTF-8
EOF
echo LANG=C.UTF-8 >"$MNT/etc/default/locale"

# DHCP on every Ethernet link, whatever its name (cloud-init may write
# its own configuration for the first NIC too; networkd takes the first
# file that matches, in name order).
mkdir -p "$MNT/etc/systemd/network"
cat >"$MNT/etc/systemd/network/90-vgrid-dhcp.network" <<'EOF'
[Match]
Type=ether

[Network]
DHCP=ipv4
EOF

step "installing packages"
in_root() { chroot "$MNT" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
bg in_root apt-get -q update >"$WORK/apt.log" 2>&1 || {
	tail -n 30 "$WORK/apt.log" >&2
	exit 1
}
# grub-pc is configured with no install devices: GRUB goes onto the loop
# device below, by hand.
echo "grub-pc grub-pc/install_devices multiselect" | in_root debconf-set-selections
echo "grub-pc grub-pc/install_devices_empty boolean true" | in_root debconf-set-selections
bg in_root apt-get -q -y -o Dpkg::Options::=--force-confold install \
	linux-image-cloud-amd64 systemd-sysv udev dbus cloud-init iproute2 \
	openssh-server cloud-guest-utils grub-pc zstd >>"$WORK/apt.log" 2>&1 || {
	tail -n 40 "$WORK/apt.log" >&2
	exit 1
}

step "installing GRUB"
in_root systemctl enable systemd-networkd.service >/dev/null 2>&1
bg in_root grub-install --target=i386-pc --boot-directory=/boot --modules="part_msdos ext2" "$LOOP" >"$WORK/grub.log" 2>&1 || {
	cat "$WORK/grub.log" >&2
	exit 1
}
bg in_root update-grub >>"$WORK/grub.log" 2>&1 || {
	cat "$WORK/grub.log" >&2
	exit 1
}
if ! grep -q "root=UUID=$UUID" "$MNT/boot/grub/grub.cfg"; then
	echo "$0: grub.cfg does not boot root=UUID=$UUID:" >&2
	grep -n 'linux' "$MNT/boot/grub/grub.cfg" >&2 || true
	exit 1
fi

step "cleaning up the image"
# The package cache is unmounted first: it is kept, the image's own goes.
umount "$MNT/var/cache/apt/archives"
in_root apt-get -q clean
rm -f "$MNT/usr/sbin/policy-rc.d" "$MNT/etc/apt/apt.conf.d/01-vgrid-keep-debs"
# Every instance makes its own SSH host keys (cloud-init, at first boot).
rm -f "$MNT"/etc/ssh/ssh_host_*
rm -rf "$MNT"/var/lib/apt/lists/* "$MNT"/usr/share/man/* "$MNT"/usr/share/info/* \
	"$MNT"/var/cache/debconf/*-old "$MNT"/var/lib/dpkg/*-old \
	"$MNT"/tmp/* "$MNT"/var/tmp/* "$MNT"/var/lib/cloud/*
find "$MNT/usr/share/doc" ! -type d ! -name copyright -delete
find "$MNT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$MNT/var/log" -type f -exec truncate -s 0 {} +
# Every instance makes its own machine ID at first boot.
: >"$MNT/etc/machine-id"
rm -f "$MNT/var/lib/dbus/machine-id"
umount "$MNT/dev" "$MNT/sys" "$MNT/proc"
# Freed blocks go back to the sparse file, so qemu-img skips them.
fstrim "$MNT" >/dev/null 2>&1 || true
umount "$MNT"
partx -d "$LOOP" 2>/dev/null || true
losetup -d "$LOOP"
LOOP=

step "converting to qcow2"
# zstd compression: a tenth of zlib's time, at the same size (QEMU >= 5.1
# reads it).
bg qemu-img convert -c -W -m 8 -o compression_type=zstd -O qcow2 "$RAW" "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
step "built $OUT: $(du -k "$OUT" | cut -f1) KiB on disk, $SIZE virtual"
