package model

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{"512Mi", 512 * MiB, false},
		{"2Gi", 2 * GiB, false},
		{"1.5Gi", 3 * GiB / 2, false},
		{"1G", 1e9, false},
		{"1e+9", 1e9, false},
		{"1e9", 1e9, false},
		{"1048576", MiB, false},
		{"10KiB", 10 * KiB, false},
		{"", 0, true},
		{"12Zi", 0, true},
		{"Mi", 0, true},
		{"99999999999Ti", 0, true},
		{"NaN", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestByteSizeJSON(t *testing.T) {
	var v struct{ M ByteSize }
	if err := json.Unmarshal([]byte(`{"M": null}`), &v); err != nil || v.M != 0 {
		t.Fatalf("null: %v %v", v.M, err)
	}
	b, _ := json.Marshal(ByteSize(3 * GiB))
	if string(b) != `"3Gi"` {
		t.Fatalf("marshal: got %s, want \"3Gi\"", b)
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	if err := json.Unmarshal([]byte(`"1h30m"`), &d); err != nil || d.D() != 90*time.Minute {
		t.Fatalf("got %v %v", d, err)
	}
	if err := json.Unmarshal([]byte(`9223372036.854775807`), &d); err == nil {
		t.Fatalf("overflowing seconds accepted as %v", d)
	}
	if err := json.Unmarshal([]byte(`30`), &d); err != nil || d.D() != 30*time.Second {
		t.Fatalf("got %v %v", d, err)
	}
}

func TestByteSizeHuman(t *testing.T) {
	for _, tt := range []struct {
		in   ByteSize
		want string
	}{{0, "0"}, {512, "512"}, {512 * MiB, "512Mi"}, {23635508 * KiB, "22.5Gi"}, {3 * GiB / 2, "1.5Gi"}, {2 * TiB, "2Ti"}} {
		if got := tt.in.Human(); got != tt.want {
			t.Errorf("ByteSize(%d).Human() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}
