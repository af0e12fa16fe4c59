package spec

import (
	"strings"
	"testing"

	"vgrid/internal/model"
)

// TestClusterScratch checks a role's scratch volume: a size a volume
// may have, an absolute mount that is not reserved nor one of (or inside
// one of) the role's other mounts, and member volume names that fit.
func TestClusterScratch(t *testing.T) {
	const role = "roles:\n  - name: %r\n    count: %n\n    image: img\n    quantum: {vcpus: 1, memory: 128Mi}\n    volumes: [{name: data, mount: /data, read_only: true}]\n    scratch: %s\n"
	for _, c := range []struct {
		name, cluster, role, count, scratch string
		field, reason                       string // "" field: accepted
	}{
		{"accepted", "c", "w", "3", "{size: 1Gi, mount: /scratch}", "", ""},
		{"one member", "c", "w", "1", "{size: 16Mi, mount: /var/tmp/s}", "", ""},
		{"no members", "c", "w", "0", "{size: 1Gi, mount: /scratch}", "", ""},
		{"size zero", "c", "w", "2", "{size: 0, mount: /scratch}", "roles[0].scratch.size", "at least"},
		{"no size", "c", "w", "2", "{mount: /scratch}", "roles[0].scratch.size", "at least"},
		{"too small", "c", "w", "2", "{size: 1Mi, mount: /scratch}", "roles[0].scratch.size", "at least 16Mi, got 1Mi"},
		{"too big", "c", "w", "2", "{size: 17Ti, mount: /scratch}", "roles[0].scratch.size", "at most"},
		{"no mount", "c", "w", "2", "{size: 1Gi}", "roles[0].scratch.mount", "required"},
		{"relative mount", "c", "w", "2", "{size: 1Gi, mount: scratch}", "roles[0].scratch.mount", "absolute"},
		{"root", "c", "w", "2", "{size: 1Gi, mount: /}", "roles[0].scratch.mount", "root"},
		{"reserved", "c", "w", "2", "{size: 1Gi, mount: /proc/x}", "roles[0].scratch.mount", "reserved"},
		{"unclean", "c", "w", "2", "{size: 1Gi, mount: /a/../b}", "roles[0].scratch.mount", "clean"},
		{"a volume's mount", "c", "w", "2", "{size: 1Gi, mount: /data}", "roles[0].volumes[0].mount", "/data is already the mount point of roles[0].scratch.mount"},
		{"inside a volume", "c", "w", "2", "{size: 1Gi, mount: /data/s}", "roles[0].volumes[0].mount", "inside one another"},
		{"around a volume", "c", "w", "2", "{size: 1Gi, mount: /d}", "", ""},
		{"unknown field", "c", "w", "2", "{size: 1Gi, mount: /s, iops: 3}", "roles[0].scratch.iops", ""},
		{"names too long", strings.Repeat("c", 30), strings.Repeat("r", 25), "12", "{size: 1Gi, mount: /s}", "roles[0].scratch", "shorten the cluster's or the role's name by 4"},
		{"names just fit", strings.Repeat("c", 30), strings.Repeat("r", 20), "12", "{size: 1Gi, mount: /s}", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := "name: " + c.cluster + "\nduration: 1h\n" + strings.NewReplacer("%r", c.role, "%n", c.count, "%s", c.scratch).Replace(role)
			s, err := ParseCluster([]byte(y))
			if c.field != "" {
				if err == nil || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), c.reason) {
					t.Fatalf("got %v, want an error on %s saying %q", err, c.field, c.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range s.Members() {
				want := model.VolumeMount{Name: model.ScratchName(c.cluster, c.role, m.Index), Mount: s.Roles[0].Scratch.Mount}
				if n := len(m.Spec.Volumes); n != 2 || m.Spec.Volumes[1] != want || m.Spec.Volumes[1].ReadOnly {
					t.Errorf("member %s attaches %+v, want data then %+v (writable)", m.Name, m.Spec.Volumes, want)
				}
				if why := ValidVolumeName(want.Name); why != "" {
					t.Errorf("scratch volume name %s: %s", want.Name, why)
				}
			}
		})
	}
}
