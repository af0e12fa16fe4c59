package qemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// SeedVendorData is the name of the NoCloud vendor-data file in the seed.
const SeedVendorData = "vendor-data"

// SeedFiles returns the files of an instance's NoCloud seed: meta-data
// (instance-id, local-hostname, public-keys), user-data (the context's, or
// a #cloud-config carrying the SSH keys), vgrid-env (KEY=VALUE lines,
// sorted by key), vendor-data (VendorData, for cloud-init images),
// network-config when the guest has NICs (NetworkConfig) and
// vgrid-cluster.json when it is a member of a cluster (the context's
// ClusterContext as JSON) and vgrid-volumes.json when it has network
// volumes (VolumesFile). The same spec gives the same bytes.
func SeedFiles(spec hypervisor.InstanceSpec) map[string][]byte {
	c := spec.Context
	if c == nil {
		c = &model.Context{}
	}
	host := c.Hostname
	if host == "" {
		host = spec.Hostname
	}
	if host == "" {
		host = spec.ID
	}
	var meta bytes.Buffer
	fmt.Fprintf(&meta, "instance-id: %s\n", yamlString(spec.ID))
	fmt.Fprintf(&meta, "local-hostname: %s\n", yamlString(host))
	if len(c.SSHKeys) > 0 {
		meta.WriteString("public-keys:\n")
		for _, k := range c.SSHKeys {
			fmt.Fprintf(&meta, "  - %s\n", yamlString(k))
		}
	}
	user := []byte(c.UserData)
	if c.UserData == "" {
		var b bytes.Buffer
		b.WriteString("#cloud-config\n")
		if len(c.SSHKeys) > 0 {
			b.WriteString("ssh_authorized_keys:\n")
			for _, k := range c.SSHKeys {
				fmt.Fprintf(&b, "  - %s\n", yamlString(k))
			}
		}
		user = b.Bytes()
	}
	var env bytes.Buffer
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&env, "%s=%s\n", k, c.Env[k])
	}
	files := map[string][]byte{
		proto.SeedMetaData: meta.Bytes(),
		proto.SeedUserData: user,
		proto.SeedEnv:      env.Bytes(),
		SeedVendorData:     []byte(VendorData),
	}
	if len(spec.NICs) > 0 {
		files[proto.SeedNetworkConfig] = NetworkConfig(spec.NICs)
	}
	if c.Cluster != nil {
		b, err := json.MarshalIndent(c.Cluster, "", "  ")
		if err != nil {
			// A ClusterContext has nothing json cannot encode.
			panic(fmt.Sprintf("encode cluster context: %v", err))
		}
		files[proto.SeedCluster] = append(b, '\n')
	}
	if len(spec.Volumes) > 0 {
		files[proto.SeedVolumes] = VolumesFile(spec.Volumes)
	}
	return files
}

// VolumesFile returns the seed's vgrid-volumes.json: for each volume, in
// order, its name, serial, mount point and whether it is read-only, as a
// JSON array of proto.SeedVolume. The guest agent finds each disk by its
// serial, formats it on first use and mounts it.
func VolumesFile(vols []hypervisor.VolumeAttachment) []byte {
	out := make([]proto.SeedVolume, len(vols))
	for i, v := range vols {
		out[i] = proto.SeedVolume{Name: v.Name, Serial: v.Serial, Mount: v.Mount, ReadOnly: v.ReadOnly}
	}
	// Strings and booleans: encoding cannot fail.
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}

// NetworkConfig returns the seed's NoCloud network-config (version 2) for
// the guest's interfaces on taps: NIC i is ethernet "id<i>", matched by its
// MAC and named eth<i>, with its address and, if it has one, its gateway
// (gateway4). The guest agent applies it; so does cloud-init in other
// images. Every value is quoted, so YAML reads nothing else into it.
func NetworkConfig(nics []hypervisor.NIC) []byte {
	var b bytes.Buffer
	b.WriteString("version: 2\nethernets:\n")
	for i, n := range nics {
		fmt.Fprintf(&b, "  id%d:\n", i)
		fmt.Fprintf(&b, "    match:\n      macaddress: %s\n", yamlString(strings.ToLower(n.MAC)))
		fmt.Fprintf(&b, "    set-name: %s\n", yamlString("eth"+strconv.Itoa(i)))
		fmt.Fprintf(&b, "    addresses:\n      - %s\n", yamlString(n.Address.String()))
		if n.Gateway.IsValid() {
			fmt.Fprintf(&b, "    gateway4: %s\n", yamlString(n.Gateway.String()))
		}
		if n.MTU > 0 {
			fmt.Fprintf(&b, "    mtu: %d\n", n.MTU)
		}
	}
	return b.Bytes()
}

// VendorData is the seed's NoCloud vendor-data. The vgrid guest image
// ignores it; an ordinary cloud image has no vgrid guest agent, and
// cloud-init runs it instead: a boothook that starts Reporter in the
// background, at every boot, so that the host learns the guest is ready.
//
// It is a boothook, not a #cloud-config with bootcmd or runcmd, because
// cloud-init merges vendor-data and user-data key by key, user-data
// winning: a user-data with its own runcmd (or bootcmd) would silently
// drop the vendor's, and with it the ready report. A boothook is a part
// of its own, run at every boot (runcmd runs once per instance, and a
// restarted workspace is the same instance) during cloud-init's network
// stage, after the hostname is set and the network is up. The report goes
// out once systemd-logind runs, usually while cloud-init still applies the
// rest of the user's config and runs its scripts: as with the vgrid guest
// agent, ready does not wait for user-data to finish. User-data can still
// switch it off with "vendor_data: {enabled: false}".
const VendorData = "#cloud-boothook\n#!/bin/sh\n" +
	"# vgrid: tell the host on the virtio-serial port " + proto.PortName + " that the\n" +
	"# guest is ready (this image has no vgrid guest agent).\n" +
	"(\n" + Reporter + "vgrid_main\n) </dev/null >/dev/null 2>&1 &\n"

// Reporter is the POSIX sh that stands in for the guest agent in a
// cloud-init image: it defines vgrid_main, which finds the virtio-serial
// port named vgrid.agent, waits for an address (at most 15 s) and for
// systemd-logind (at most a minute; it handles the ACPI power button that
// Stop presses), writes one "ready" line with the guest's facts (vcpus,
// memory, addresses, hostname, kernel, root disk size, uptime; agent
// "cloud-init"), and then answers the host's facts, ping and shutdown
// requests until the guest goes down. It runs at most once per boot.
// vgrid_info alone prints the facts as a GuestInfo JSON object.
const Reporter = `vgrid_str() {
	printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/[\\"]/\\&/g')"
}
vgrid_addrs() {
	{ ip -o -4 addr show; ip -o -6 addr show; } 2>/dev/null |
		awk '$2 != "lo" && !/ scope (link|host) / { printf "%s\"%s\"", sep, $4; sep = "," }'
}
vgrid_info() {
	vcpus=$(nproc 2>/dev/null || grep -c '^processor' /proc/cpuinfo)
	mem=$(awk '$1 == "MemTotal:" { printf "%d", $2 / 1024 }' /proc/meminfo)
	# The root file system's device, and its whole disk if it is a partition.
	blk=/sys/dev/block/$(awk '$5 == "/" { d = $3 } END { print d }' /proc/self/mountinfo)
	if [ -e "$blk/partition" ]; then blk=$blk/..; fi
	disk=0
	if [ -r "$blk/size" ]; then disk=$(($(cat "$blk/size") * 512)); fi
	printf '{"vcpus":%d,"memory_mib":%d,"addresses":[%s],"hostname":%s,"kernel":%s,"disk_bytes":%d,"uptime_s":%s,"context":true,"agent":"cloud-init"}' \
		"$vcpus" "$mem" "$(vgrid_addrs)" "$(vgrid_str "$(uname -n)")" "$(vgrid_str "$(uname -r)")" \
		"$disk" "$(awk '{ print $1 }' /proc/uptime)"
}
# vgrid_msg TYPE [ID [INFO]] prints one protocol line.
vgrid_msg() {
	printf '{"type":"%s"' "$1"
	if [ -n "$2" ]; then printf ',"id":%s' "$(vgrid_str "$2")"; fi
	if [ -n "$3" ]; then printf ',"info":%s' "$3"; fi
	printf '}\n'
}
vgrid_port() {
	for f in /sys/class/virtio-ports/*/name; do
		if [ -r "$f" ] && [ "$(cat "$f")" = ` + proto.PortName + ` ]; then
			f=${f%/name}
			echo "/dev/${f##*/}"
			return 0
		fi
	done
	return 1
}
vgrid_main() {
	mkdir /run/vgrid-reporter 2>/dev/null || return 0
	modprobe virtio_console 2>/dev/null
	i=0
	until port=$(vgrid_port) && [ -c "$port" ]; do
		i=$((i + 1))
		if [ $i -gt 300 ]; then return 1; fi
		sleep 1
	done
	# DHCP is normally done before cloud-init's network stage; if not, wait
	# a little so that the report has the guest's address.
	i=0
	while [ -z "$(vgrid_addrs)" ] && [ $i -lt 15 ]; do
		i=$((i + 1))
		sleep 1
	done
	# A clean stop is an ACPI power button press, which systemd-logind
	# handles: a press before it runs is lost. Wait for it (at most a
	# minute), so that the host may stop the guest as soon as it is ready.
	if [ -d /run/systemd/system ] &&
		[ "$(systemctl show -p LoadState --value systemd-logind.service 2>/dev/null)" = loaded ]; then
		i=0
		until systemctl -q is-active systemd-logind.service || [ $i -ge 60 ]; do
			i=$((i + 1))
			sleep 1
		done
	fi
	# The write blocks until the host connects.
	until command exec 3<>"$port" && vgrid_msg ready "" "$(vgrid_info)" >&3; do
		exec 3>&-
		sleep 2
	done
	while :; do
		# read fails at end of file: no host is connected; wait for one.
		if ! IFS= read -r line <&3; then
			sleep 1
			continue
		fi
		id=$(printf '%s' "$line" | sed -n 's/.*"id":"\([^"\\]*\)".*/\1/p')
		case $line in
		*'"type":"facts"'*) vgrid_msg facts "$id" "$(vgrid_info)" ;;
		*'"type":"ping"'*) vgrid_msg pong "$id" ;;
		*'"type":"shutdown"'*)
			vgrid_msg shutdown "$id" >&3
			poweroff
			;;
		*) printf '{"type":"error","message":"unknown request"}\n' ;;
		esac >&3
	done
}
`

// yamlString writes s as a YAML double-quoted scalar (JSON's string syntax
// is a subset of YAML's).
func yamlString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// writeSeed (re)writes the cidata ISO; the context may differ between
// starts, so it is made on every start. It is written in Go (iso9660.go)
// rather than by genisoimage -V cidata -J -r, which took about 15 ms a
// start; the guest sees the same label, names and contents.
func (d *Driver) writeSeed(spec hypervisor.InstanceSpec, p Paths) error {
	tmp := p.Seed + ".tmp"
	if err := writeISOFile(tmp, proto.SeedLabel, SeedFiles(spec), time.Now()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write seed: %w", err)
	}
	if err := os.Rename(tmp, p.Seed); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write seed: %w", err)
	}
	return nil
}
