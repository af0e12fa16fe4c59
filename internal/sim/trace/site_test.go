package trace

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// siteDoc is a workload with site as its <site> element and one lease.
func siteDoc(site string) string {
	return `<?xml version="1.0"?>
<lease-workload name="t">
  <description>test</description>
  ` + site + `
  <lease-requests>
` + lwfReq("00:00:00", `id="a"`, `<start></start><duration time="01:00:00"/>`) + `
  </lease-requests>
</lease-workload>
`
}

func TestReadLWFSite(t *testing.T) {
	set := func(n, cpu, mem string) string {
		return `<node-set numnodes="` + n + `"><res type="CPU" amount="` + cpu + `"/><res type="Memory" amount="` + mem + `"/></node-set>`
	}
	tests := []struct {
		name string
		site string
		want *Site
		err  string // a substring of the error
	}{
		{"none", "", nil, ""},
		{"haizea sample grid", `<site><resource-types names="CPU Memory"/><nodes>` + set("4", "100", "1024") + `</nodes></site>`,
			&Site{Hosts: 4, CPUs: 1, MemoryMiB: 1024}, ""},
		{"two equal node-sets add up, disk, 2 CPUs as two instances", `<site><nodes><node-set numnodes="2"><res type="CPU" amount="100"/><res type="CPU" amount="100"/><res type="Memory" amount="2048"/><res type="Disk" amount="10240"/></node-set>` +
			`<node-set numnodes="3"><res type="CPU" amount="200"/><res type="Memory" amount="2048"/><res type="Disk" amount="10240"/></node-set></nodes></site>`,
			&Site{Hosts: 5, CPUs: 2, MemoryMiB: 2048, DiskMiB: 10240}, ""},
		{"no nodes", `<site><resource-types names="CPU Memory"/></site>`, nil, "site: missing <nodes><node-set>"},
		{"numnodes missing", `<site><nodes><node-set><res type="CPU" amount="100"/></node-set></nodes></site>`, nil, "node-set 1: missing numnodes attribute"},
		{"numnodes zero", `<site><nodes>` + set("0", "100", "1024") + `</nodes></site>`, nil, `node-set 1: numnodes: "0" is not a positive whole number`},
		{"bad amount", `<site><nodes>` + set("1", "lots", "1024") + `</nodes></site>`, nil, `node-set 1: res CPU: amount "lots" is not a number`},
		{"no memory", `<site><nodes><node-set numnodes="1"><res type="CPU" amount="100"/></node-set></nodes></site>`, nil, `node-set 1: no <res type="Memory">`},
		{"no cpu", `<site><nodes><node-set numnodes="1"><res type="Memory" amount="100"/></node-set></nodes></site>`, nil, `node-set 1: no <res type="CPU">`},
		{"res type missing", `<site><nodes><node-set numnodes="1"><res amount="100"/></node-set></nodes></site>`, nil, "node-set 1: <res>: missing type attribute"},
		{"undeclared type", `<site><resource-types names="CPU Memory"/><nodes><node-set numnodes="1"><res type="CPU" amount="100"/><res type="Memory" amount="1"/><res type="GPU" amount="1"/></node-set></nodes></site>`,
			nil, `res GPU: type not in <resource-types names="CPU Memory">`},
		{"names missing", `<site><resource-types/><nodes>` + set("1", "100", "1024") + `</nodes></site>`, nil, "<resource-types>: missing names attribute"},
		{"different hosts", `<site><nodes>` + set("2", "100", "1024") + set("1", "200", "1024") + `</nodes></site>`, nil,
			"node-set 2 (1 hosts of 2 CPU, 1024 MiB) differs from node-set 1 (2 hosts of 1 CPU, 1024 MiB)"},
		{"two sites", `<site><nodes>` + set("1", "100", "1024") + `</nodes></site><site><nodes>` + set("1", "100", "1024") + `</nodes></site>`, nil, "a second <site>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := ReadLWFWorkload(strings.NewReader(siteDoc(tc.site)))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				if !strings.Contains(err.Error(), "line 4: site:") && !strings.Contains(err.Error(), "second") {
					t.Errorf("error %q does not name the line of <site>", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(w.Leases) != 1 {
				t.Errorf("%d leases, want 1", len(w.Leases))
			}
			if (w.Site == nil) != (tc.want == nil) || (w.Site != nil && *w.Site != *tc.want) {
				t.Errorf("site %+v, want %+v", w.Site, tc.want)
			}
		})
	}
}

// TestOpenWorkloadSite: Open reads a site from an LWF file, none from
// other formats; ReadLWF still returns the leases alone.
func TestOpenWorkloadSite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "w.lwf")
	doc := siteDoc(`<site><nodes><node-set numnodes="4"><res type="CPU" amount="100"/><res type="Memory" amount="1024"/></node-set></nodes></site>`)
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	w, f, err := OpenWorkload(p, SWFOptions{})
	if err != nil || f != FormatLWF || w.Site == nil || w.Site.String() != "4 hosts of 1 CPU, 1024 MiB" || len(w.Leases) != 1 {
		t.Fatalf("OpenWorkload: %+v %v %v", w, f, err)
	}
	ls, err := ReadLWF(strings.NewReader(doc))
	if err != nil || len(ls) != 1 {
		t.Fatalf("ReadLWF: %v %v", ls, err)
	}
	sp := filepath.Join(dir, "w.swf")
	if err := os.WriteFile(sp, []byte("1 0 0 100 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if w, _, err := OpenWorkload(sp, SWFOptions{}); err != nil || w.Site != nil || len(w.Leases) != 1 {
		t.Fatalf("SWF: %+v %v", w, err)
	}
}

func TestDir(t *testing.T) {
	root := t.TempDir()
	traces := filepath.Join(root, "shared", "traces")
	deep := filepath.Join(root, "main", "internal", "sim")
	for _, d := range []string{traces, deep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("walks up", func(t *testing.T) {
		t.Setenv(TracesEnv, "")
		t.Chdir(deep)
		got, err := Dir()
		if err != nil {
			t.Fatal(err)
		}
		if g, _ := filepath.EvalSymlinks(got); g != mustEval(t, traces) {
			t.Errorf("Dir() = %s, want %s", got, traces)
		}
	})
	t.Run("env wins", func(t *testing.T) {
		t.Setenv(TracesEnv, deep)
		t.Chdir(deep)
		if got, err := Dir(); err != nil || got != deep {
			t.Errorf("Dir() = %s, %v; want %s", got, err, deep)
		}
	})
	t.Run("env not a directory", func(t *testing.T) {
		t.Setenv(TracesEnv, file)
		if _, err := Dir(); err == nil || !strings.Contains(err.Error(), "VGRID_TRACES="+file+": not a directory") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("env missing", func(t *testing.T) {
		t.Setenv(TracesEnv, filepath.Join(root, "nope"))
		if _, err := Dir(); err == nil || !strings.Contains(err.Error(), "VGRID_TRACES=") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("none above", func(t *testing.T) {
		if _, err := findUp(filepath.Join(root, "main")); err != nil {
			t.Errorf("from main: %v", err) // root/shared/traces is above
		}
		lone := t.TempDir()
		if _, err := findUp(lone); err == nil || !strings.Contains(err.Error(), "set VGRID_TRACES") {
			if _, statErr := os.Stat("/shared/traces"); statErr != nil {
				t.Errorf("error %v", err)
			}
		}
	})
}

func mustEval(t *testing.T, p string) string {
	t.Helper()
	e, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
