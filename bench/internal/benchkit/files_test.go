package benchkit

import (
	"os"
	"path/filepath"
	"testing"
)

// RandomFile writes the size asked, Warm reads it, TimeCp copies it and
// removes the copy.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := RandomFile(src, 3<<20+5); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(src); err != nil || st.Size() != 3<<20+5 {
		t.Fatalf("random file: %v %v", st, err)
	}
	if err := Warm(src); err != nil {
		t.Fatal(err)
	}
	d, err := TimeCp(src, dst)
	if err != nil || d <= 0 {
		t.Fatalf("cp: %v %v", d, err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("the copy is left: %v", err)
	}
	if _, err := TimeCp(filepath.Join(dir, "none"), dst); err == nil {
		t.Fatal("cp of a missing file succeeded")
	}
}
