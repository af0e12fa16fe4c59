package qemu

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// seedCheckScript is user-data that prints what the guest sees of its
// seed: the hostname and environment the agent applied, each file as
// Linux's isofs shows it with Rock Ridge (the default, which the agent
// mounts) and, after remounting with norock, with Joliet.
const seedCheckScript = `#!/bin/sh
seed=/run/vgrid/seed
dev=$(awk -v m=$seed '$2 == m { print $1 }' /proc/mounts)
echo "SEED-DEV $dev"
echo "SEED-HOST $(hostname)"
echo "SEED-ENVVAR $ROLE"
echo "SEED-ENVFILE $(tr '\n' ' ' </etc/vgrid/env)"
cd $seed && for f in *; do echo "SEED-RR $f $(stat -c '%a %u %g %s' $f) $(md5sum <$f | cut -d' ' -f1)"; done
cd /
umount $seed
mkdir -p /mnt/joliet
mount -t iso9660 -o ro,norock $dev /mnt/joliet
cd /mnt/joliet && for f in *; do echo "SEED-JOLIET $f $(md5sum <$f | cut -d' ' -f1)"; done
cd /
umount /mnt/joliet
mount -t iso9660 -o ro $dev $seed
echo SEED-DONE
`

// TestSeedInGuest boots a guest and checks that its kernel reads the seed
// the driver wrote (iso9660.go) through both Rock Ridge and Joliet: every
// file by its exact name, mode 0444, root-owned, byte for byte; and that
// the guest agent applied it (hostname, environment, user-data).
func TestSeedInGuest(t *testing.T) {
	_, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("seedcheck", img)
	spec.Context = &model.Context{
		Hostname: "seed-host",
		Env:      map[string]string{"ROLE": "head", "PEERS": "10.0.0.2,10.0.0.3"},
		SSHKeys:  []string{"ssh-ed25519 AAAA user@host"},
		UserData: seedCheckScript,
	}
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	in := hypervisortest.WaitGuest(t, d, spec.ID)
	if in.Guest.Hostname != "seed-host" {
		t.Errorf("guest hostname: got %q, want seed-host", in.Guest.Hostname)
	}
	waitConsole(t, d, spec.ID, "SEED-DONE", hypervisortest.GuestTimeout)
	log, err := d.ConsoleLog(ctx, spec.ID, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string][]string{}
	for _, l := range strings.Split(string(log), "\n") {
		l = strings.TrimRight(l, "\r")
		if i := strings.Index(l, "SEED-"); i >= 0 {
			k, v, _ := strings.Cut(l[i:], " ")
			lines[k] = append(lines[k], v)
		}
	}
	t.Logf("guest saw: %q", lines)
	want := map[string][]string{
		"SEED-HOST":    {"seed-host"},
		"SEED-ENVVAR":  {"head"},
		"SEED-ENVFILE": {"PEERS='10.0.0.2,10.0.0.3' ROLE='head' "},
	}
	var rr, joliet []string
	files := SeedFiles(spec)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		sum := md5.Sum(files[name])
		rr = append(rr, fmt.Sprintf("%s 444 0 0 %d %s", name, len(files[name]), hex.EncodeToString(sum[:])))
		joliet = append(joliet, fmt.Sprintf("%s %s", name, hex.EncodeToString(sum[:])))
	}
	want["SEED-RR"], want["SEED-JOLIET"] = rr, joliet
	for k, w := range want {
		if got := lines[k]; !slices.Equal(got, w) {
			t.Errorf("%s: got %q, want %q", k, got, w)
		}
	}
	if dev := lines["SEED-DEV"]; len(dev) != 1 || !strings.HasPrefix(dev[0], "/dev/vd") {
		t.Errorf("seed device: got %q", dev)
	}
}
