package trace

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	const (
		swf = "1 0 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n"
		inj = "0 100 10 10 1 1 1024 0 'NONE.img' 600\n"
		lwf = "\xef\xbb\xbf\n  <lease-workload><lease-requests><lease-request arrival=\"0\"><lease id=\"x\"><nodes><node-set numnodes=\"1\"/></nodes><duration time=\"5\"/></lease></lease-request></lease-requests></lease-workload>\n"
	)
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	tests := []struct {
		file, content string
		wantFormat    Format
		wantID        string
		wantErr       string
	}{
		{file: "a.swf", content: swf, wantFormat: FormatSWF, wantID: "1"},
		{file: "A.SWF.GZ", content: gz(swf), wantFormat: FormatSWF, wantID: "1"},
		{file: "a.lwf", content: lwf, wantFormat: FormatLWF, wantID: "x"},
		{file: "a.xml", content: lwf, wantFormat: FormatLWF, wantID: "x"},
		{file: "a.lwf.gz", content: gz(lwf), wantFormat: FormatLWF, wantID: "x"},
		{file: "a.lwf", content: inj, wantFormat: FormatInjection, wantID: "1"},
		{file: "a.lwf", content: strings.Repeat(" \n", 5000) + inj, wantFormat: FormatInjection, wantID: "1"},
		{file: "a.lwf", content: "", wantFormat: FormatInjection},
		{file: "a.txt", content: swf, wantErr: `unknown extension ".txt"`},
		{file: "a.swf.gz", content: swf, wantErr: "gzip: invalid header"},
		{file: "a.swf", content: "1 2 3\n", wantErr: "a.swf: read swf: line 1: got 3 fields, want 18"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p := filepath.Join(dir, tt.file)
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, f, err := Open(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if f != tt.wantFormat {
				t.Errorf("got format %q, want %q", f, tt.wantFormat)
			}
			if tt.wantID == "" {
				if len(got) != 0 {
					t.Errorf("got %d leases, want 0", len(got))
				}
				return
			}
			if len(got) != 1 || got[0].ID != tt.wantID {
				t.Errorf("got %+v, want one lease with ID %q", got, tt.wantID)
			}
		})
	}
	if _, _, err := Open(filepath.Join(dir, "missing.swf")); err == nil || !strings.Contains(err.Error(), "open trace:") {
		t.Errorf("got error %v, want an open trace error", err)
	}
}

func TestOpenWithOptions(t *testing.T) {
	p := filepath.Join(t.TempDir(), "n.swf")
	if err := os.WriteFile(p, []byte("1 0 0 10 8 -1 -1 -1 -1 -1 1 7 3 -1 -1 -1 -1 -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, _, err := OpenWith(p, SWFOptions{RuntimeAsRequested: true, ProcsPerNode: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Nodes != 2 || got[0].Duration != 10*time.Second {
		t.Fatalf("got %+v, want one 2-node 10 s lease", got)
	}
}

func TestMergePrefixRun(t *testing.T) {
	a := []Lease{{ID: "1", Submit: 0}, {ID: "2", Submit: 20}}
	b := []Lease{{ID: "1", Submit: 10}, {ID: "2", Submit: 20}}
	got := Merge(Prefix(a, "swf-"), Prefix(b, "ar-"))
	var ids []string
	for _, l := range got {
		ids = append(ids, l.ID)
	}
	if got, want := strings.Join(ids, ","), "swf-1,ar-1,swf-2,ar-2"; got != want {
		t.Errorf("got order %s, want %s", got, want)
	}
	if got, want := (Lease{Duration: 10, RealDuration: 4}).Run(), time.Duration(4); got != want {
		t.Errorf("got run %v, want %v", got, want)
	}
	if got, want := (Lease{Duration: 10}).Run(), time.Duration(10); got != want {
		t.Errorf("got run %v, want %v", got, want)
	}
}

func TestCoarsen(t *testing.T) {
	tests := []struct {
		k    int
		in   Lease
		want Lease
	}{
		{2, Lease{Nodes: 3, CPUs: 1, MemoryMiB: 1024, DiskMiB: 10}, Lease{Nodes: 2, CPUs: 2, MemoryMiB: 2048, DiskMiB: 20}},
		{2, Lease{Nodes: 4, CPUs: 0.5, MemoryMiB: 512}, Lease{Nodes: 2, CPUs: 1, MemoryMiB: 1024}},
		{4, Lease{Nodes: 1, CPUs: 1, MemoryMiB: 1024}, Lease{Nodes: 1, CPUs: 4, MemoryMiB: 4096}},
		{1, Lease{Nodes: 3, CPUs: 1, MemoryMiB: 1024}, Lease{Nodes: 3, CPUs: 1, MemoryMiB: 1024}},
		{0, Lease{Nodes: 3, CPUs: 1}, Lease{Nodes: 3, CPUs: 1}},
	}
	for _, tt := range tests {
		if got := Coarsen([]Lease{tt.in}, tt.k); got[0] != tt.want {
			t.Errorf("Coarsen(%+v, %d): got %+v, want %+v", tt.in, tt.k, got[0], tt.want)
		}
	}
}
