package trace

import (
	"strings"
	"testing"
	"time"
	"vgrid/internal/model"
)

func TestReadInjection(t *testing.T) {
	const s = time.Second
	ar := func(id string, submit, start, dur, real time.Duration, nodes int) Lease {
		return Lease{ID: id, Submit: submit, Kind: model.LeaseReservation, Start: start, Duration: dur, RealDuration: real,
			Nodes: nodes, CPUs: 1, MemoryMiB: 1024, Image: "NONE.img", ImageSizeMiB: 600}
	}
	tests := []struct {
		name    string
		in      string
		want    []Lease
		wantErr string
	}{
		{
			name: "haizea lines with header and comments",
			in: "reqTime startTime duration realDuration numNodes CPU mem disk vmImage vmImageSize\n" +
				"# comment\n\n" +
				"0 86400 6829 6829 21 1 1024 0 'NONE.img' 600\n" +
				"3280\t89680\t8652\t600\t1\t1\t1024\t0\t'NONE.img'\t600\r\n",
			want: []Lease{
				ar("1", 0, 86400*s, 6829*s, 6829*s, 21),
				ar("2", 3280*s, 89680*s, 8652*s, 600*s, 1),
			},
		},
		{
			name: "start -1 is best effort; other values kept; request time clamped",
			in: "10 -1 100 50 2 0.5 512 20 img 300\n" +
				"-1049 85351 5389 5389 2 1 1024 0 'NONE.img' 600\n" +
				"0 -1205 7342 7342 9 1 1024 0 'NONE.img' 600\n" +
				"5 20 10 30 1 1 1024 0 NONE.img 600\n",
			want: []Lease{
				ar("2", 0, 85351*s, 5389*s, 5389*s, 2),
				ar("3", 0, -1205*s, 7342*s, 7342*s, 9),
				ar("4", 5*s, 20*s, 10*s, 10*s, 1), // real duration capped
				{ID: "1", Submit: 10 * s, Kind: model.LeaseBestEffort, Duration: 100 * s, RealDuration: 50 * s, Nodes: 2,
					CPUs: 0.5, MemoryMiB: 512, DiskMiB: 20, Image: "img", ImageSizeMiB: 300, Preemptible: true},
			},
		},
		{name: "empty", in: "", want: nil},
		{
			name:    "header after data is an error",
			in:      "0 1 2 2 1 1 1024 0 x 600\nreqTime startTime\n",
			wantErr: "read injection: line 2: got 2 fields, want 10",
		},
		{
			name:    "too few fields",
			in:      "0 86400 6829 6829 21 1 1024 0 'NONE.img'\n",
			wantErr: "read injection: line 1: got 9 fields, want 10",
		},
		{
			name:    "not a number",
			in:      "0 86400 6829 6829 x21 1 1024 0 'NONE.img' 600\n",
			wantErr: `read injection: line 1: field 5 (nodes): "x21" is not a number`,
		},
		{
			name:    "zero duration",
			in:      "0 86400 0 0 1 1 1024 0 'NONE.img' 600\n",
			wantErr: "read injection: line 1: field 3 (duration): 0: want more than 0",
		},
		{
			name:    "zero real duration",
			in:      "0 86400 10 0 1 1 1024 0 'NONE.img' 600\n",
			wantErr: "read injection: line 1: field 4 (real duration): 0: want more than 0",
		},
		{
			name:    "zero nodes",
			in:      "0 86400 10 10 0 1 1024 0 'NONE.img' 600\n",
			wantErr: "read injection: line 1: field 5 (nodes): 0: want 1 or more",
		},
		{
			name:    "negative memory",
			in:      "0 86400 10 10 1 1 -1024 0 'NONE.img' 600\n",
			wantErr: "read injection: line 1: field 7 (memory): -1024: out of range",
		},
		{
			name:    "negative cpu",
			in:      "0 86400 10 10 1 -1 1024 0 'NONE.img' 600\n",
			wantErr: "read injection: line 1: field 6 (cpu): -1: out of range",
		},
		{
			name:    "fractional nodes",
			in:      "0 86400 10 10 1.5 1 1024 0 'NONE.img' 600\n",
			wantErr: "read injection: line 1: field 5 (nodes): 1.5: not a whole number",
		},
		{
			name:    "time out of range",
			in:      "0 9e99 10 10 1 1 1024 0 'NONE.img' 600\n",
			wantErr: "read injection: line 1: field 2 (start time): 9e99: out of range",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadInjection(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadInjection: %v", err)
			}
			checkLeases(t, got, tt.want)
		})
	}
}
