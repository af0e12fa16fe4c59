package sched

import (
	"errors"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

func res(cores float64, mem, disk model.ByteSize) model.Resources {
	return model.Resources{MilliCPU: int64(cores * 1000), Memory: mem, Disk: disk}
}

func TestPlace(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	big := res(2, 8*model.GiB, 100*model.GiB)
	tests := []struct {
		name     string
		hosts    []Host
		req      model.Resources
		wantHost string
		wantErr  []string // substrings of the refusal
	}{
		{
			name:     "first fit in name order",
			hosts:    []Host{{Name: "b", Capacity: big, Ready: true}, {Name: "a", Capacity: big, Ready: true}},
			req:      res(1, model.GiB, model.GiB),
			wantHost: "a",
		},
		{
			name: "skips full and unready hosts",
			hosts: []Host{
				{Name: "a", Capacity: big, Ready: true, Commitments: []Commitment{{"p/x", res(1.5, model.GiB, 0), time.Time{}}}},
				{Name: "b", Capacity: big, Ready: false},
				{Name: "c", Capacity: big, Ready: true},
			},
			req:      res(1, model.GiB, model.GiB),
			wantHost: "c",
		},
		{
			name:    "no hosts",
			req:     res(1, model.GiB, 0),
			wantErr: []string{"no ready host"},
		},
		{
			name: "memory short, frees when lease ends",
			hosts: []Host{{Name: "a", Capacity: big, Ready: true, Commitments: []Commitment{
				{"p/long", res(0.5, 4*model.GiB, 0), now.Add(2 * time.Hour)},
				{"p/short", res(0.5, 3*model.GiB, 0), now.Add(time.Hour)},
			}}},
			req:     res(0.5, 2*model.GiB, 0),
			wantErr: []string{"memory: requested 2Gi, at most 1Gi free (host a), short by 1Gi", "frees up at 2026-11-24T13:00:00Z when p/short ends"},
		},
		{
			name:    "too big for any host",
			hosts:   []Host{{Name: "a", Capacity: big, Ready: true}},
			req:     res(4, model.GiB, 0),
			wantErr: []string{"cpu: requested 4.00 cores, at most 2.00 cores free", "no host is large enough"},
		},
		{
			name: "resources free on different hosts",
			hosts: []Host{
				{Name: "a", Capacity: res(2, 2*model.GiB, 0), Ready: true},
				{Name: "b", Capacity: res(1, 8*model.GiB, 0), Ready: true},
			},
			req:     res(2, 4*model.GiB, 0),
			wantErr: []string{"memory: requested 4Gi, at most 2Gi free (host a)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Place(tt.hosts, Request{Workspace: "p/new", Resources: tt.req}, now)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Place: %v", err)
				}
				if d.Host != tt.wantHost {
					t.Fatalf("got host %q, want %q", d.Host, tt.wantHost)
				}
				return
			}
			var nf *NoFitError
			if !errors.As(err, &nf) {
				t.Fatalf("got %v, want a *NoFitError", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func BenchmarkPlace1000Hosts(b *testing.B) {
	hosts := make([]Host, 1000)
	for i := range hosts {
		hosts[i] = Host{Name: string(rune('a'+i%26)) + strings.Repeat("x", i%7), Capacity: res(64, 256*model.GiB, model.TiB), Ready: true}
		for j := 0; j < 10; j++ {
			hosts[i].Commitments = append(hosts[i].Commitments, Commitment{"p/w", res(6, 25*model.GiB, 10*model.GiB), time.Time{}})
		}
	}
	req := Request{Resources: res(8, 32*model.GiB, 10*model.GiB)}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Place(hosts, req, now); err == nil {
			b.Fatal("expected no fit")
		}
	}
}
