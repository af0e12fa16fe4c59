package qemu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vgrid/internal/guest/agent"
	"vgrid/internal/guest/proto"
	"vgrid/internal/model"
)

var isoTime = time.Date(2026, 11, 24, 13, 14, 15, 0, time.UTC)

func TestISOPrimaryNames(t *testing.T) {
	tests := []struct {
		names []string
		want  []string // in the order of names
	}{
		{[]string{"meta-data", "user-data", "vgrid-env", "vendor-data"},
			[]string{"META_DAT.;1", "USER_DAT.;1", "VGRID_EN.;1", "VENDOR_D.;1"}},
		{[]string{"README.md", "a.b.c", ".hidden", "x.longext", "Ünï"},
			[]string{"README.MD;1", "A_B.C;1", "_HIDDEN.;1", "X.LON;1", "_N_.;1"}},
		{[]string{"abcdefghij", "abcdefghik", "abcdefghil"},
			[]string{"ABCDEFGH.;1", "ABCDEFG1.;1", "ABCDEFG2.;1"}},
	}
	for _, tt := range tests {
		var ents []*isoEntry
		for _, n := range tt.names {
			ents = append(ents, &isoEntry{name: n})
		}
		assignPrimaryNames(slices.Clone(ents))
		for i, e := range ents {
			if e.primary != tt.want[i] {
				t.Errorf("%q: got %q, want %q", e.name, e.primary, tt.want[i])
			}
		}
	}
	// ECMA-119 9.3 order: a shorter name sorts before a longer one with
	// the same start, whatever the extension.
	ids := []string{"AB_C.;1", "AB.Z;1", "A.;1", "AB.A;1", "B.;1"}
	slices.SortFunc(ids, comparePrimary)
	if want := []string{"A.;1", "AB.A;1", "AB.Z;1", "AB_C.;1", "B.;1"}; !slices.Equal(ids, want) {
		t.Errorf("order: got %q, want %q", ids, want)
	}
}

func TestBuildISOErrors(t *testing.T) {
	tests := []struct {
		label string
		files map[string][]byte
		want  string
	}{
		{"", nil, "volume label"},
		{strings.Repeat("x", 33), nil, "volume label"},
		{"caf\u00e9", nil, "volume label"},
		{"cidata", map[string][]byte{"": nil}, "bad file name"},
		{"cidata", map[string][]byte{".": nil}, "bad file name"},
		{"cidata", map[string][]byte{"..": nil}, "bad file name"},
		{"cidata", map[string][]byte{"a/b": nil}, "not allowed"},
		{"cidata", map[string][]byte{"a;1": nil}, "not allowed"},
		{"cidata", map[string][]byte{"a\nb": nil}, "not allowed"},
		{"cidata", map[string][]byte{"\xff": nil}, "bad file name"},
		{"cidata", map[string][]byte{strings.Repeat("x", 65): nil}, "longer than"},
		{"cidata", map[string][]byte{strings.Repeat("é", 33): nil}, "longer than"},
	}
	for _, tt := range tests {
		if _, err := buildISO(tt.label, tt.files, isoTime); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("buildISO(%q, %q): got %v, want %q", tt.label, slices.Collect(maps.Keys(tt.files)), err, tt.want)
		}
	}
	if _, err := buildISO("cidata", map[string][]byte{strings.Repeat("x", 64): nil}, isoTime); err != nil {
		t.Errorf("name of 64 bytes: %v", err)
	}
	big := map[string][]byte{"a": make([]byte, isoMaxData/2), "b": make([]byte, isoMaxData/2+1)}
	if _, err := buildISO("cidata", big, isoTime); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("files of more than %d bytes: got %v", isoMaxData, err)
	}
	if _, err := buildISO("cidata", nil, time.Date(1899, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Error("a time before 1900: no error")
	}
}

// isoCases are file sets for the checks against isoinfo and the kernel.
func isoCases() map[string]map[string][]byte {
	spec := testSpec()
	spec.Context = &model.Context{
		Hostname: "head-0",
		SSHKeys:  []string{"ssh-ed25519 AAAA user@host"},
		Env:      map[string]string{"ROLE": "head", "A": "x y=z"},
		UserData: "#!/bin/sh\necho hi\n",
	}
	sizes := map[string][]byte{}
	for _, n := range []int{0, 1, 2047, 2048, 2049, 100000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		sizes[fmt.Sprintf("file-%d", n)] = b
	}
	many := map[string][]byte{}
	for i := range 60 {
		// Long names: the directories take several sectors.
		many[fmt.Sprintf("a-rather-long-file-name-to-fill-the-directory-%03d", i)] = []byte(fmt.Sprintf("file %d\n", i))
	}
	return map[string]map[string][]byte{
		"seed":    SeedFiles(spec),
		"sizes":   sizes,
		"many":    many,
		"unicode": {"héllo wörld.txt": []byte("hi\n"), "UPPER-lower": []byte("x"), "sp ace": nil},
		"empty":   {},
	}
}

func TestBuildISOStructure(t *testing.T) {
	for name, files := range isoCases() {
		t.Run(name, func(t *testing.T) {
			im, err := buildISO(proto.SeedLabel, files, isoTime)
			if err != nil {
				t.Fatal(err)
			}
			b := im.head
			if len(b)%isoSector != 0 || im.size != int64(len(b))+isoPadSectors*isoSector {
				t.Fatalf("image of %d bytes, %d with padding", len(b), im.size)
			}
			pvd := b[16*isoSector : 17*isoSector]
			if label, ok := agent.ISOVolumeLabel(pvd); !ok || label != proto.SeedLabel {
				t.Errorf("label: got %q, %v", label, ok)
			}
			if got := binary.LittleEndian.Uint32(pvd[80:]); int64(got)*isoSector != im.size {
				t.Errorf("volume space size: %d sectors, image %d bytes", got, im.size)
			}
			if got := binary.BigEndian.Uint32(pvd[84:]); int64(got)*isoSector != im.size {
				t.Errorf("volume space size (big-endian): %d sectors", got)
			}
			svd := b[17*isoSector:]
			if svd[0] != 2 || string(svd[1:6]) != "CD001" || string(svd[88:91]) != "%/E" {
				t.Errorf("joliet descriptor: % x", svd[:8])
			}
			if term := b[18*isoSector:]; term[0] != 255 || string(term[1:6]) != "CD001" {
				t.Errorf("terminator: % x", term[:8])
			}
			// The same input gives the same bytes.
			again, err := buildISO(proto.SeedLabel, files, isoTime)
			if err != nil || !bytes.Equal(again.head, b) {
				t.Error("not deterministic")
			}
		})
	}
}

// isoListing is one file as isoinfo -l shows it.
type isoListing struct {
	mode string
	size string
	name string
}

// isoinfoList runs isoinfo -l with extra flags (-J, -R) and returns the
// root directory's files ("." and ".." included).
func isoinfoList(t *testing.T, iso string, flags ...string) []isoListing {
	t.Helper()
	out := runTool(t, "isoinfo", append([]string{"-i", iso, "-l"}, flags...)...)
	var ls []isoListing
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || line[0] != '-' && line[0] != 'd' {
			continue
		}
		f := strings.Fields(line)
		_, name, ok := strings.Cut(line, "]  ")
		if len(f) < 5 || !ok {
			t.Fatalf("isoinfo line %q", line)
		}
		ls = append(ls, isoListing{mode: f[0], size: f[4], name: strings.TrimSuffix(name, " ")})
	}
	return ls
}

// TestISOInfo reads the images with isoinfo (from genisoimage): the label
// and extensions, the Joliet, Rock Ridge and primary names, and each file
// extracted byte for byte through each of the three.
func TestISOInfo(t *testing.T) {
	needTool(t, "isoinfo")
	dir := t.TempDir()
	for name, files := range isoCases() {
		t.Run(name, func(t *testing.T) {
			iso := filepath.Join(dir, name+".iso")
			if err := writeISOFile(iso, proto.SeedLabel, files, isoTime); err != nil {
				t.Fatal(err)
			}
			d := string(runTool(t, "isoinfo", "-d", "-i", iso))
			for _, want := range []string{"Volume id: cidata\n", "Joliet with UCS level 3 found", "Rock Ridge signatures version 1 found"} {
				if !strings.Contains(d, want) {
					t.Errorf("isoinfo -d has no %q:\n%s", want, d)
				}
			}
			im, _ := buildISO(proto.SeedLabel, files, isoTime)
			if want := fmt.Sprintf("Volume size is: %d\n", im.size/isoSector); !strings.Contains(d, want) {
				t.Errorf("isoinfo -d has no %q:\n%s", want, d)
			}
			names := slices.Sorted(maps.Keys(files))
			ents := make([]*isoEntry, 0, len(names))
			for _, n := range names {
				ents = append(ents, &isoEntry{name: n})
			}
			assignPrimaryNames(ents)
			primary := map[string]string{}
			for _, e := range ents {
				primary[e.name] = e.primary
			}
			for _, ns := range []struct {
				flag string
				name func(string) string
				mode string
			}{
				{"-J", func(n string) string { return n }, "----------"},
				{"-R", func(n string) string { return n }, "-r--r--r--"},
				{"", func(n string) string { return primary[n] }, "----------"},
			} {
				var flags []string
				if ns.flag != "" {
					flags = []string{ns.flag}
				}
				ls := isoinfoList(t, iso, flags...)
				if len(ls) != len(files)+2 || ls[0].name != "." || ls[1].name != ".." {
					t.Fatalf("isoinfo -l %s: got %v", ns.flag, ls)
				}
				if ns.flag == "-R" && (ls[0].mode != "dr-xr-xr-x" || ls[1].mode != "dr-xr-xr-x") {
					t.Errorf("isoinfo -l -R: root is %s", ls[0].mode)
				}
				got := map[string]isoListing{}
				for _, l := range ls[2:] {
					got[l.name] = l
				}
				for _, n := range names {
					if ns.flag == "-J" && !isPrintableASCII(n) {
						// isoinfo prints Joliet names in ISO 8859-1; TestISOMount
						// reads them through the kernel.
						continue
					}
					l, ok := got[ns.name(n)]
					if !ok {
						t.Errorf("isoinfo -l %s: no %q in %v", ns.flag, ns.name(n), ls)
						continue
					}
					if l.size != fmt.Sprint(len(files[n])) || l.mode != ns.mode {
						t.Errorf("isoinfo -l %s: %q is %s of %s bytes, want %s of %d", ns.flag, n, l.mode, l.size, ns.mode, len(files[n]))
					}
					x := runTool(t, "isoinfo", append(flags, "-i", iso, "-x", "/"+ns.name(n))...)
					if !bytes.Equal(x, files[n]) {
						t.Errorf("isoinfo -x %s /%s: got %d bytes %.40q, want %d bytes %.40q", ns.flag, ns.name(n), len(x), x, len(files[n]), files[n])
					}
				}
			}
		})
	}
}

// TestISOMatchesGenisoimage compares what isoinfo sees in our image and in
// genisoimage's of the same files: label, extensions, names, modes, sizes.
func TestISOMatchesGenisoimage(t *testing.T) {
	needTool(t, "isoinfo")
	genisoimage := needTool(t, "genisoimage")
	dir := t.TempDir()
	for name, files := range isoCases() {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(dir, name)
			if err := os.Mkdir(src, 0o755); err != nil {
				t.Fatal(err)
			}
			for n, data := range files {
				if err := os.WriteFile(filepath.Join(src, n), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			theirs := filepath.Join(dir, name+"-genisoimage.iso")
			runTool(t, genisoimage, "-quiet", "-V", proto.SeedLabel, "-J", "-r", "-o", theirs, src)
			ours := filepath.Join(dir, name+".iso")
			if err := writeISOFile(ours, proto.SeedLabel, files, isoTime); err != nil {
				t.Fatal(err)
			}
			// The files, in name order (the directory order follows the
			// primary names, and genisoimage's differ when they collide).
			files := func(ls []isoListing) []isoListing {
				ls = ls[2:]
				slices.SortFunc(ls, func(a, b isoListing) int { return strings.Compare(a.name, b.name) })
				return ls
			}
			for _, flags := range [][]string{{"-J"}, {"-R"}} {
				got, want := isoinfoList(t, ours, flags...), isoinfoList(t, theirs, flags...)
				if !slices.Equal(files(got), files(want)) || got[0].mode != want[0].mode {
					t.Errorf("isoinfo -l %s:\n got %v\nwant %v", flags[0], got, want)
				}
			}
			// The primary names differ only where genisoimage would make
			// names of more than 8.3 characters; the seed's do not.
			if name == "seed" {
				got, want := isoinfoList(t, ours), isoinfoList(t, theirs)
				if !slices.Equal(got, want) {
					t.Errorf("isoinfo -l:\n got %v\nwant %v", got, want)
				}
			}
			descr := func(iso string) []string {
				var keep []string
				for _, l := range strings.Split(string(runTool(t, "isoinfo", "-d", "-i", iso)), "\n") {
					if !strings.HasPrefix(l, "Application id") && !strings.HasPrefix(l, "Volume size") {
						keep = append(keep, l)
					}
				}
				return keep
			}
			if got, want := descr(ours), descr(theirs); !slices.Equal(got, want) {
				t.Errorf("isoinfo -d:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestISOMount mounts the images with Linux's isofs (root and loop devices
// needed), as the guest agent and cloud-init do: the Rock Ridge names,
// modes and contents by default, and with norock the Joliet names.
func TestISOMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	for name, files := range isoCases() {
		t.Run(name, func(t *testing.T) {
			iso := filepath.Join(dir, name+".iso")
			if err := writeISOFile(iso, proto.SeedLabel, files, isoTime); err != nil {
				t.Fatal(err)
			}
			for _, opts := range []string{"loop,ro", "loop,ro,norock"} {
				mnt := filepath.Join(dir, name+"-"+strings.ReplaceAll(opts, ",", "-"))
				if err := os.Mkdir(mnt, 0o755); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command("mount", "-t", "iso9660", "-o", opts, iso, mnt).CombinedOutput(); err != nil {
					t.Skipf("cannot mount an iso9660 image here: %v: %s", err, out)
				}
				func() {
					defer func() {
						if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
							t.Errorf("umount: %v: %s", err, out)
						}
					}()
					ents, err := os.ReadDir(mnt)
					if err != nil {
						t.Fatal(err)
					}
					var got []string
					for _, e := range ents {
						got = append(got, e.Name())
					}
					if want := slices.Sorted(maps.Keys(files)); !slices.Equal(got, want) {
						t.Errorf("mount -o %s: names %q, want %q", opts, got, want)
					}
					for n, data := range files {
						b, err := os.ReadFile(filepath.Join(mnt, n))
						if err != nil {
							t.Errorf("mount -o %s: %v", opts, err)
							continue
						}
						if !bytes.Equal(b, data) {
							t.Errorf("mount -o %s: %s: got %d bytes, want %d", opts, n, len(b), len(data))
						}
						if opts == "loop,ro" {
							st, err := os.Stat(filepath.Join(mnt, n))
							if err == nil && st.Mode() != 0o444 {
								t.Errorf("%s: mode %v, want -r--r--r--", n, st.Mode())
							}
						}
					}
				}()
			}
		})
	}
}

// BenchmarkSeedISO writes the seed as the driver does; compare with
// BenchmarkSeedGenisoimage.
func BenchmarkSeedISO(b *testing.B) {
	d := &Driver{}
	p := instancePaths(b.TempDir(), DefaultRunDir)
	spec := testSpec()
	spec.Context = &model.Context{Hostname: "h", Env: map[string]string{"A": "1", "B": "2"}, SSHKeys: []string{"ssh-ed25519 AAAA u@h"}}
	for b.Loop() {
		if err := d.writeSeed(spec, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildISO is BenchmarkSeedISO without the file system.
func BenchmarkBuildISO(b *testing.B) {
	spec := testSpec()
	spec.Context = &model.Context{Hostname: "h", Env: map[string]string{"A": "1", "B": "2"}, SSHKeys: []string{"ssh-ed25519 AAAA u@h"}}
	files := SeedFiles(spec)
	for b.Loop() {
		if _, err := buildISO(proto.SeedLabel, files, isoTime); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeedGenisoimage is the old start path: the seed files written
// to a temporary directory, then genisoimage -J -r.
func BenchmarkSeedGenisoimage(b *testing.B) {
	genisoimage := needTool(b, "genisoimage")
	dir := b.TempDir()
	spec := testSpec()
	spec.Context = &model.Context{Hostname: "h", Env: map[string]string{"A": "1", "B": "2"}, SSHKeys: []string{"ssh-ed25519 AAAA u@h"}}
	iso := filepath.Join(dir, "cidata.iso")
	for b.Loop() {
		src, err := os.MkdirTemp(dir, ".seed")
		if err != nil {
			b.Fatal(err)
		}
		for name, data := range SeedFiles(spec) {
			if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		runTool(b, genisoimage, "-quiet", "-V", proto.SeedLabel, "-J", "-r", "-o", iso, src)
		os.RemoveAll(src)
	}
}
