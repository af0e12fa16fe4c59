package spec

import "testing"

func TestFieldPath(t *testing.T) {
	for _, c := range [][3]string{
		{"", "node", "node"},
		{"node", "labels", "node.labels"},
		{"node.labels", "zone_1", "node.labels.zone_1"},
		{"node.labels", "a.b", `node.labels["a.b"]`},
		{"node.labels", "", `node.labels[""]`},
	} {
		if got := FieldPath(c[0], c[1]); got != c[2] {
			t.Errorf("FieldPath(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}
