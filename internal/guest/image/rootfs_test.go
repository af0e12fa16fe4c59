package image

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
)

func TestFSUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct{ a, b string }{
		{"vgrid-rootfs:vgrid-guest", "vgrid-rootfs:other"},
		{"", "x"},
	}
	for _, tt := range tests {
		ua, ub := fsUUID(tt.a), fsUUID(tt.b)
		if !re.MatchString(ua) || !re.MatchString(ub) {
			t.Errorf("not UUIDs: %s %s", ua, ub)
		}
		if ua != fsUUID(tt.a) || ua == ub {
			t.Errorf("fsUUID(%q)=%s, fsUUID(%q)=%s: want stable and distinct", tt.a, ua, tt.b, ub)
		}
	}
}

func TestStage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("copied"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		files   []stagedFile
		paths   []string
		wantErr bool
	}{
		{
			name: "parents created, modes applied",
			files: []stagedFile{
				{Path: "usr/share/x/script", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
				{Path: "bin/tool", Mode: 0o700, Source: src},
				{Path: "bin/sh", Link: "/bin/busybox"},
				{Path: "root", Mode: 0o700, IsDir: true},
			},
			paths: []string{"bin", "bin/sh", "bin/tool", "root", "usr", "usr/share", "usr/share/x", "usr/share/x/script"},
		},
		{
			name:    "duplicate",
			files:   []stagedFile{{Path: "a", Data: nil, Mode: 0o644}, {Path: "a", Link: "b"}},
			wantErr: true,
		},
		{
			name:    "missing source",
			files:   []stagedFile{{Path: "a", Source: "/nonexistent/file", Mode: 0o644}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		paths, err := stage(dir, tt.files)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%s: err = %v", tt.name, err)
		}
		if err != nil {
			continue
		}
		if !reflect.DeepEqual(paths, tt.paths) {
			t.Errorf("%s: paths %q, want %q", tt.name, paths, tt.paths)
		}
		for _, f := range tt.files {
			st, err := os.Lstat(filepath.Join(dir, f.Path))
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if f.Link == "" && st.Mode().Perm() != f.Mode.Perm() {
				t.Errorf("%s: %s mode %v, want %v", tt.name, f.Path, st.Mode().Perm(), f.Mode.Perm())
			}
		}
	}
}
