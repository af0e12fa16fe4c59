package main

import "testing"

func TestParseMilliCPU(t *testing.T) {
	for in, want := range map[string]int64{"500m": 500, "0.5": 500, "2": 2000, "1.25": 1250, " 3000m ": 3000} {
		if got, err := parseMilliCPU(in); err != nil || got != want {
			t.Errorf("parseMilliCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "0m", "abc", "1.5m", "NaN", "0.0001", "1e9"} {
		if got, err := parseMilliCPU(bad); err == nil {
			t.Errorf("parseMilliCPU(%q) = %d, want an error", bad, got)
		}
	}
	c := capacityFlags{cpus: "1", memory: "2Gi", disk: "10Gi", bandwidth: "1Gbit"}
	r, err := c.resources()
	if err != nil || r.MilliCPU != 1000 || r.Memory != 2<<30 || r.Disk != 10<<30 || r.Bandwidth != 125_000_000 {
		t.Errorf("resources = %+v, %v", r, err)
	}
	if _, err := (&capacityFlags{memory: "lots"}).resources(); err == nil {
		t.Error("--memory lots accepted")
	}
	if _, err := (&capacityFlags{bandwidth: "fast"}).resources(); err == nil {
		t.Error("--bandwidth fast accepted")
	}
}
