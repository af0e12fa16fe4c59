package ipam

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestCheckVNIRange(t *testing.T) {
	for _, c := range []struct {
		lo, hi        uint32
		field, reason string
	}{
		{DefaultMinVNI, DefaultMaxVNI, "", ""},
		{1, MaxVNI, "", ""},
		{7, 7, "", ""},
		{0, 10, "min", "must be at least 1 (VNIs are 1 to 16777215; the default range is 4096 to 65535), got 0"},
		{0, 0, "min", "must be at least 1"},
		{1, MaxVNI + 1, "max", "must be at most 16777215 (VXLAN network identifiers are 24 bits), got 16777216"},
		{1, 1<<32 - 1, "max", "got 4294967295"},
		{70000, 65535, "min", "70000 is above max 65535"},
	} {
		err := CheckVNIRange(c.lo, c.hi)
		checkErr(t, "CheckVNIRange", err, c.field, c.reason, ErrInvalid)
		v, err := NewVNIs(c.lo, c.hi)
		checkErr(t, "NewVNIs", err, c.field, c.reason, ErrInvalid)
		if err == nil && (v.Capacity() != int(c.hi-c.lo)+1 || v.Free() != v.Capacity() || v.Len() != 0) {
			t.Errorf("NewVNIs(%d, %d): capacity %d free %d len %d", c.lo, c.hi, v.Capacity(), v.Free(), v.Len())
		}
	}
	var zero VNIs
	if zero.Capacity() != 0 || zero.Free() != 0 {
		t.Errorf("zero VNIs: capacity %d free %d, want 0", zero.Capacity(), zero.Free())
	}
}

func TestVNIsAllocate(t *testing.T) {
	v, err := NewVNIs(100, 102)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op, key       string
		want          uint32
		field, reason string
		kind          error
	}{
		{"alloc", "p/a", 100, "", "", nil},
		{"alloc", "p/b", 101, "", "", nil},
		{"alloc", "p/a", 100, "", "", nil},
		{"alloc", "p/c", 102, "", "", nil},
		{"alloc", "p/d", 0, "vni", "range 100-102 is full: all 3 VNIs are assigned", ErrFull},
		{"release", "p/a", 0, "", "", nil},
		{"alloc", "p/d", 100, "", "", nil},
		{"alloc", "", 0, "key", "required", ErrInvalid},
		{"alloc", "x\xfe", 0, "key", "UTF-8", ErrInvalid},
	}
	for i, s := range steps {
		if s.op == "release" {
			if !v.Release(s.key) {
				t.Fatalf("step %d: Release(%s) = false", i, s.key)
			}
			continue
		}
		before := v.Clone()
		n, err := v.Allocate(s.key)
		checkErr(t, "Allocate("+s.key+")", err, s.field, s.reason, s.kind)
		if err != nil {
			if !reflect.DeepEqual(v, before) {
				t.Errorf("step %d: failed Allocate changed the VNIs", i)
			}
			continue
		}
		if got, ok := v.Lookup(s.key); n != s.want || !ok || got != n {
			t.Errorf("step %d: Allocate(%s) = %d (lookup %d, %v), want %d", i, s.key, n, got, ok, s.want)
		}
	}
	if v.Release("p/none") {
		t.Errorf("Release(p/none) = true")
	}

	top := VNIs{Min: MaxVNI - 1, Max: MaxVNI}
	for _, want := range []uint32{MaxVNI - 1, MaxVNI} {
		if n, err := top.Allocate(string(rune('a' + want%2))); err != nil || n != want {
			t.Errorf("Allocate at the top of the range = %d, %v; want %d", n, err, want)
		}
	}
	if _, err := top.Allocate("c"); err == nil {
		t.Errorf("Allocate in a full top range: no error")
	}
}

func TestVNIsValidate(t *testing.T) {
	for _, c := range []struct {
		name          string
		v             VNIs
		field, reason string
	}{
		{"good", VNIs{Min: 10, Max: 20, Assigned: map[string]uint32{"p/a": 10, "p/b": 20}}, "", ""},
		{"zero", VNIs{}, "min", "must be at least 1"},
		{"below", VNIs{Min: 10, Max: 20, Assigned: map[string]uint32{"p/a": 9}}, `assigned["p/a"]`, "VNI 9 is outside the range 10-20"},
		{"above", VNIs{Min: 10, Max: 20, Assigned: map[string]uint32{"net": 21}}, "assigned.net", "VNI 21 is outside the range 10-20"},
		{"duplicate", VNIs{Min: 10, Max: 20, Assigned: map[string]uint32{"p/b": 12, "p/a": 12}}, `assigned["p/b"]`, `VNI 12 is also assigned to "p/a"`},
		{"empty key", VNIs{Min: 10, Max: 20, Assigned: map[string]uint32{"": 12}}, `assigned[""]`, "key required"},
	} {
		checkErr(t, c.name, c.v.Validate(), c.field, c.reason, ErrInvalid)
		if c.field != "" {
			_, err := c.v.Allocate("new")
			checkErr(t, c.name+": Allocate", err, c.field, c.reason, ErrInvalid)
		}
	}
}

func TestVNIsJSON(t *testing.T) {
	v, _ := NewVNIs(DefaultMinVNI, DefaultMaxVNI)
	for _, k := range []string{"p/b", "p/a"} {
		if _, err := v.Allocate(k); err != nil {
			t.Fatal(err)
		}
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	const golden = `{"min":4096,"max":65535,"assigned":{"p/a":4097,"p/b":4096}}`
	if string(js) != golden {
		t.Errorf("JSON:\n got %s\nwant %s", js, golden)
	}
	var back VNIs
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, v) || back.Validate() != nil {
		t.Errorf("round trip: got %+v, want %+v", back, v)
	}
}
