package ipam

import (
	"encoding/json"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestNewPool(t *testing.T) {
	p := mustPool(t, "10.1.0.0/24")
	if p.Len() != 0 || p.Free() != 253 || p.Capacity() != 253 || p.Assigned == nil {
		t.Errorf("NewPool: got %+v (len %d, free %d), want empty with 253 free", p, p.Len(), p.Free())
	}
	_, err := NewPool(prefix("10.1.0.0/8"))
	checkErr(t, "NewPool(/8)", err, "subnet", "too large", ErrInvalid)
	var zero Pool
	if zero.Capacity() != 0 || zero.Free() != 0 || zero.Len() != 0 {
		t.Errorf("zero Pool: capacity %d free %d len %d, want 0 0 0", zero.Capacity(), zero.Free(), zero.Len())
	}
}

func TestPoolAllocate(t *testing.T) {
	p := mustPool(t, "10.0.0.0/29") // members .2 to .6
	steps := []struct {
		op, key, want, field, reason string
		kind                         error
	}{
		{"alloc", "a", "10.0.0.2", "", "", nil},
		{"alloc", "b", "10.0.0.3", "", "", nil},
		{"alloc", "a", "10.0.0.2", "", "", nil}, // idempotent
		{"alloc", "c", "10.0.0.4", "", "", nil},
		{"release", "b", "", "", "", nil},
		{"alloc", "d", "10.0.0.3", "", "", nil}, // lowest free: b's, at once
		{"alloc", "e", "10.0.0.5", "", "", nil},
		{"alloc", "f", "10.0.0.6", "", "", nil},
		{"alloc", "g", "", "subnet", "10.0.0.0/29 is full: all 5 member addresses are assigned (8 addresses less network, gateway and broadcast)", ErrFull},
		{"alloc", "e", "10.0.0.5", "", "", nil}, // full, but e has one
		{"alloc", "", "", "key", "required", ErrInvalid},
		{"alloc", strings.Repeat("k", MaxKeyLen+1), "", "key", "must be at most 256 bytes, got 257", ErrInvalid},
		{"alloc", "bad\xff", "", "key", "must be valid UTF-8", ErrInvalid},
		{"release", "a", "", "", "", nil},
		{"alloc", "g", "10.0.0.2", "", "", nil},
	}
	for i, s := range steps {
		what := s.op + "(" + s.key + ")"
		if s.op == "release" {
			if !p.Release(s.key) {
				t.Fatalf("step %d: Release(%s) = false, want true", i, s.key)
			}
			continue
		}
		before := p.Clone()
		a, err := p.Allocate(s.key)
		checkErr(t, what, err, s.field, s.reason, s.kind)
		if err != nil {
			if !reflect.DeepEqual(p, before) {
				t.Errorf("step %d: %s failed but changed the pool", i, what)
			}
			continue
		}
		if a.String() != s.want {
			t.Errorf("step %d: %s = %s, want %s", i, what, a, s.want)
		}
		if got, ok := p.Lookup(s.key); !ok || got != a {
			t.Errorf("step %d: Lookup(%s) = %v, %v; want %s", i, s.key, got, ok, a)
		}
		if p.Free()+p.Len() != p.Capacity() {
			t.Errorf("step %d: Free %d + Len %d != Capacity %d", i, p.Free(), p.Len(), p.Capacity())
		}
	}
	if p.Release("nobody") {
		t.Errorf("Release(nobody) = true, want false")
	}
	if _, ok := p.Lookup("b"); ok {
		t.Errorf("Lookup(b) after Release: found")
	}
}

func TestPoolAllocateNilMap(t *testing.T) {
	p := Pool{Subnet: prefix("192.168.0.0/24")}
	a, err := p.Allocate("w1")
	if err != nil || a != addr("192.168.0.2") {
		t.Fatalf("Allocate on a nil map = %v, %v; want 192.168.0.2", a, err)
	}
}

func TestPoolAllocateWant(t *testing.T) {
	base := mustPool(t, "10.0.0.0/24")
	base.Assigned["a"] = addr("10.0.0.2")
	base.Assigned["b"] = addr("10.0.0.10")
	for _, c := range []struct {
		key, want, field, reason string
		kind                     error
	}{
		{"c", "10.0.0.3", "", "", nil},
		{"c", "10.0.0.254", "", "", nil},
		{"b", "10.0.0.10", "", "", nil}, // idempotent
		{"c", "10.0.0.10", "address", `10.0.0.10 is already assigned to "b"`, ErrTaken},
		{"b", "10.0.0.11", "address", `"b" already has 10.0.0.10: release it before asking for 10.0.0.11`, ErrTaken},
		{"c", "10.0.0.0", "address", "10.0.0.0 is the network address of 10.0.0.0/24", ErrInvalid},
		{"c", "10.0.0.1", "address", "10.0.0.1 is the gateway of 10.0.0.0/24", ErrInvalid},
		{"c", "10.0.0.255", "address", "10.0.0.255 is the broadcast address of 10.0.0.0/24", ErrInvalid},
		{"c", "10.0.1.3", "address", "10.0.1.3 is outside subnet 10.0.0.0/24", ErrInvalid},
		{"c", "::ffff:10.0.0.3", "address", "is not an IPv4 address", ErrInvalid},
		{"c", "", "address", "required", ErrInvalid},
		{"", "10.0.0.3", "key", "required", ErrInvalid},
	} {
		p := base.Clone()
		var want netip.Addr
		if c.want != "" {
			want = addr(c.want)
		}
		what := "AllocateWant(" + c.key + ", " + c.want + ")"
		got, err := p.AllocateWant(c.key, want)
		checkErr(t, what, err, c.field, c.reason, c.kind)
		if err != nil {
			if !reflect.DeepEqual(p, base) {
				t.Errorf("%s failed but changed the pool", what)
			}
			continue
		}
		if got != want || p.Assigned[c.key] != want {
			t.Errorf("%s = %v, pool has %v", what, got, p.Assigned[c.key])
		}
	}
	// A static address is skipped by later automatic choices.
	p := mustPool(t, "10.0.0.0/24")
	if _, err := p.AllocateWant("s", addr("10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.Allocate("n"); a != addr("10.0.0.3") {
		t.Errorf("Allocate after a static .2 = %v, want 10.0.0.3", a)
	}
}

func TestPoolValidate(t *testing.T) {
	for _, c := range []struct {
		name     string
		subnet   string
		assigned map[string]string
		field    string
		reason   string
	}{
		{"empty", "10.0.0.0/24", nil, "", ""},
		{"good", "10.0.0.0/24", map[string]string{"w1": "10.0.0.2", "w2": "10.0.0.254"}, "", ""},
		{"no subnet", "", nil, "subnet", "required"},
		{"bad subnet", "10.0.0.0/8", nil, "subnet", "too large"},
		{"host bits", "10.0.0.5/24", nil, "subnet", "did you mean 10.0.0.0/24?"},
		{"outside", "10.0.0.0/24", map[string]string{"w1": "10.0.1.2"}, "assigned.w1", "10.0.1.2 is outside subnet 10.0.0.0/24"},
		{"gateway", "10.0.0.0/24", map[string]string{"w-1": "10.0.0.1"}, `assigned["w-1"]`, "10.0.0.1 is the gateway of 10.0.0.0/24"},
		{"network", "10.0.0.0/24", map[string]string{"w1": "10.0.0.0"}, "assigned.w1", "network address"},
		{"broadcast", "10.0.0.0/24", map[string]string{"w1": "10.0.0.255"}, "assigned.w1", "broadcast address"},
		{"ipv6", "10.0.0.0/24", map[string]string{"w1": "fd00::2"}, "assigned.w1", "not an IPv4 address"},
		{"no address", "10.0.0.0/24", map[string]string{"w1": ""}, "assigned.w1", "required"},
		{"duplicate", "10.0.0.0/24", map[string]string{"b": "10.0.0.7", "a": "10.0.0.7", "c": "10.0.0.8"}, "assigned.b", `10.0.0.7 is also assigned to "a"`},
		{"empty key", "10.0.0.0/24", map[string]string{"": "10.0.0.2"}, `assigned[""]`, "key required"},
		{"first bad key in order", "10.0.0.0/24", map[string]string{"z": "10.0.0.1", "m": "10.0.0.0"}, "assigned.m", "network address"},
	} {
		p := Pool{Assigned: map[string]netip.Addr{}}
		if c.subnet != "" {
			p.Subnet = prefix(c.subnet)
		}
		for k, v := range c.assigned {
			var a netip.Addr
			if v != "" {
				a = addr(v)
			}
			p.Assigned[k] = a
		}
		checkErr(t, c.name, p.Validate(), c.field, c.reason, ErrInvalid)
		if c.field != "" {
			before := p.Clone()
			_, err := p.Allocate("new")
			checkErr(t, c.name+": Allocate", err, c.field, c.reason, ErrInvalid)
			_, err = p.AllocateWant("new", addr("10.0.0.100"))
			checkErr(t, c.name+": AllocateWant", err, c.field, c.reason, ErrInvalid)
			if !reflect.DeepEqual(p, before) {
				t.Errorf("%s: Allocate on a bad pool changed it", c.name)
			}
		}
	}
}

func TestPoolJSON(t *testing.T) {
	p := mustPool(t, "10.0.0.0/24")
	for _, k := range []string{"wb", "wa", "wc"} {
		if _, err := p.Allocate(k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.AllocateWant("static", addr("10.0.0.200")); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const golden = `{"subnet":"10.0.0.0/24","assigned":{"static":"10.0.0.200","wa":"10.0.0.3","wb":"10.0.0.2","wc":"10.0.0.4"}}`
	if string(js) != golden {
		t.Errorf("JSON:\n got %s\nwant %s", js, golden)
	}
	var back Pool
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) || back.Validate() != nil {
		t.Errorf("round trip: got %+v, want %+v", back, p)
	}
	empty, _ := json.Marshal(Pool{Subnet: prefix("10.0.0.0/29")})
	if string(empty) != `{"subnet":"10.0.0.0/29"}` {
		t.Errorf("empty pool JSON: %s", empty)
	}
	// A stored pool with a bad address fails to decode or to validate.
	var bad Pool
	if err := json.Unmarshal([]byte(`{"subnet":"10.0.0.0/24","assigned":{"x":"10.0.0.1"}}`), &bad); err != nil {
		t.Fatal(err)
	}
	checkErr(t, "decoded bad pool", bad.Validate(), "assigned.x", "gateway", ErrInvalid)
}

func TestPoolClone(t *testing.T) {
	p := mustPool(t, "10.0.0.0/24")
	p.Allocate("a")
	c := p.Clone()
	c.Allocate("b")
	c.Release("a")
	if _, ok := p.Lookup("a"); !ok || p.Len() != 1 {
		t.Errorf("changing a clone changed the original: %v", p.Assigned)
	}
	if !maps.Equal(c.Assigned, map[string]netip.Addr{"b": addr("10.0.0.3")}) {
		t.Errorf("clone: %v", c.Assigned)
	}
	var zero Pool
	if zero.Clone().Assigned != nil {
		t.Errorf("Clone of a nil map made one")
	}
}
