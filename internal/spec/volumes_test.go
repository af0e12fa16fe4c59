package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"vgrid/internal/model"
)

func TestParseVolumes(t *testing.T) {
	s, err := Parse([]byte(goodYAML + "volumes:\n  - {name: data, mount: /data}\n  - name: ref\n    mount: /srv/ref\n    read_only: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []model.VolumeMount{{Name: "data", Mount: "/data"}, {Name: "ref", Mount: "/srv/ref", ReadOnly: true}}
	if !reflect.DeepEqual(s.Volumes, want) {
		t.Fatalf("volumes %+v, want %+v", s.Volumes, want)
	}
	if s, err := Parse([]byte(goodYAML + "volumes: []\n")); err != nil || s.Volumes != nil {
		t.Fatalf("empty list: %+v %v", s.Volumes, err)
	}
}

func TestVolumeErrors(t *testing.T) {
	for _, c := range []struct {
		vols   string
		field  string
		reason string
	}{
		{"[{name: data, mount: data}]", "volumes[0].mount", "want an absolute path"},
		{"[{name: data}]", "volumes[0].mount", "required"},
		{"[{name: data, mount: /}]", "volumes[0].mount", "root"},
		{"[{name: data, mount: /proc}]", "volumes[0].mount", "/proc"},
		{"[{name: data, mount: /sys/x}]", "volumes[0].mount", "/sys"},
		{"[{name: data, mount: /dev/vdb}]", "volumes[0].mount", "/dev"},
		{"[{name: data, mount: /run/vgrid/x}]", "volumes[0].mount", "/run/vgrid"},
		{"[{name: data, mount: /data/../etc}]", "volumes[0].mount", "clean"},
		{"[{name: data, mount: '/a b'}]", "volumes[0].mount", "spaces"},
		{"[{name: Data, mount: /data}]", "volumes[0].name", ""},
		{"[{name: data, mount: /a}, {name: data, mount: /b}]", "volumes[1].name", "volumes[0]"},
		{"[{name: a, mount: /data}, {name: b, mount: /data}]", "volumes[1].mount", "volumes[0].mount"},
		{"[{name: a, mount: /data}, {name: b, mount: /data/sub}]", "volumes[1].mount", "inside one another"},
		{"[{name: a, mount: /data, writable: true}]", "volumes[0].writable", ""},
		{"[{name: a, mount: /data, read_only: 3}]", "volumes[0].read_only", ""},
		{"[" + strings.Repeat("{name: a, mount: /a},", MaxVolumes) + "{name: b, mount: /b}]", "volumes", "at most"},
	} {
		_, err := Parse([]byte(goodYAML + "volumes: " + c.vols + "\n"))
		var fe *FieldErrors
		if !errors.As(err, &fe) {
			t.Errorf("%s: got %v, want field errors", c.vols, err)
			continue
		}
		found := false
		for _, f := range fe.Fields() {
			if f.Field == c.field && strings.Contains(f.Reason, c.reason) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: got %v, want %s containing %q", c.vols, err, c.field, c.reason)
		}
	}
}

func TestClusterRoleVolumes(t *testing.T) {
	base := "name: c\nduration: 1h\nroles:\n  - name: db\n    count: %d\n    image: img\n    quantum: {vcpus: 1, memory: 128Mi}\n    volumes: [{name: data, mount: /data%s}]\n"
	for _, c := range []struct {
		count  int
		extra  string
		field  string
		reason string
	}{
		{1, "", "", ""},
		{3, ", read_only: true", "", ""},
		{3, "", "roles[0].volumes[0].read_only", "a role of 3 members"},
		{1, ", mount: /x", "roles[0].volumes[0].mount", ""}, // a duplicate key
	} {
		y := strings.Replace(strings.Replace(base, "%d", string(rune('0'+c.count)), 1), "%s", c.extra, 1)
		s, err := ParseCluster([]byte(y))
		if c.field == "" {
			if err != nil {
				t.Errorf("count %d%s: %v", c.count, c.extra, err)
				continue
			}
			if m := s.Members(); len(m) != c.count || len(m[0].Spec.Volumes) != 1 || m[0].Spec.Volumes[0].Name != "data" {
				t.Errorf("members' volumes: %+v", m)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("count %d%s: got %v, want %s with %q", c.count, c.extra, err, c.field, c.reason)
		}
	}
	// Scratch: a size and a mount that does not clash with the volumes'.
	y := strings.Replace(strings.Replace(base, "%d", "2", 1), "%s", ", read_only: true", 1) + "    scratch: {size: 1Gi, mount: /data}\n"
	if _, err := ParseCluster([]byte(y)); err == nil || !strings.Contains(err.Error(), "roles[0].volumes[0].mount") {
		t.Errorf("scratch on a volume's mount: %v", err)
	}
	y = strings.Replace(strings.Replace(base, "%d", "2", 1), "%s", ", read_only: true", 1) + "    scratch: {size: 1Gi, mount: /scratch}\n"
	s, err := ParseCluster([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	m := s.Members()
	if len(m[1].Spec.Volumes) != 2 || m[1].Spec.Volumes[1] != (model.VolumeMount{Name: "c-db-1-scratch", Mount: "/scratch"}) {
		t.Fatalf("member 1's volumes: %+v", m[1].Spec.Volumes)
	}
}
