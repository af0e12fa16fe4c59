package ipam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"testing"
)

// FuzzParseSubnet checks that ParseSubnet never panics, that its errors
// name the subnet field and stay short, and that what it accepts is a
// private IPv4 network address of /16 to /29 that parses again to itself.
func FuzzParseSubnet(f *testing.F) {
	for _, s := range []string{"10.0.0.0/24", "10.0.0.1/24", "8.8.8.0/24", "fd00::/64", "10.0.0.0/8", "100.64.0.0/29", "172.31.0.0/16", "10.0.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSubnet(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Field != "subnet" || e.Reason == "" || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSubnet(%q): error %v (%T) is not an ErrInvalid *Error for subnet", s, err, err)
			}
			if len(err.Error()) > 300 {
				t.Fatalf("ParseSubnet(%q): error of %d bytes", s, len(err.Error()))
			}
			if p.IsValid() {
				t.Fatalf("ParseSubnet(%q) = %v with error %v", s, p, err)
			}
			return
		}
		if !p.Addr().Is4() || p.Bits() < MinPrefixLen || p.Bits() > MaxPrefixLen || p.Masked() != p {
			t.Fatalf("ParseSubnet(%q) = %v: not an IPv4 network address of /16 to /29", s, p)
		}
		if b := p.Addr().As4(); !(b[0] == 10 || b[0] == 172 && b[1]&0xf0 == 16 || b[0] == 192 && b[1] == 168 || b[0] == 100 && b[1]&0xc0 == 64) {
			t.Fatalf("ParseSubnet(%q) = %v: not private", s, p)
		}
		again, err := ParseSubnet(p.String())
		if err != nil || again != p {
			t.Fatalf("ParseSubnet(%q) = %v, but ParseSubnet(%q) = %v, %v", s, p, p.String(), again, err)
		}
		l, err := LayoutOf(p)
		if err != nil || l.Capacity() < 5 || l.problem(l.First) != "" || l.problem(l.Last) != "" {
			t.Fatalf("LayoutOf(%v) = %+v, %v", p, l, err)
		}
	})
}

// fuzzSubnets are the subnets FuzzPool's first byte picks from.
var fuzzSubnets = [...]string{"10.0.0.0/29", "10.0.0.0/28", "192.168.3.0/27", "100.64.0.0/24"}

// FuzzPool drives a pool with a byte string. If the input starts with '{',
// its first line is a stored pool in JSON: a damaged one must be refused
// by every method without change, a good one is the start. Otherwise the
// first byte picks a subnet. Each following byte b is an operation on the
// key "k<(b/5)%12>": b%5 is 0 or 1 Allocate, 2 AllocateWant of the address
// at the next byte's offset from the network address, 3 Release, 4 a JSON
// round trip. After each, the pool keeps its invariants (checkPool), every
// key keeps its address until released, failures change nothing, and
// Allocate fails only when the subnet is full.
func FuzzPool(f *testing.F) {
	f.Add([]byte("\x00\x00\x05\x0a\x0f\x14\x19\x1e\x03\x00"))
	f.Add([]byte("{\"subnet\":\"10.0.0.0/29\",\"assigned\":{\"k1\":\"10.0.0.3\"}}\n\x00\x05\x02\x02\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Pool
		if len(data) > 0 && data[0] == '{' {
			line, rest, _ := bytes.Cut(data, []byte("\n"))
			if json.Unmarshal(line, &p) != nil {
				return
			}
			if err := p.Validate(); err != nil {
				refused(t, &p, err)
				return
			}
			data = append([]byte{0}, rest...)
		} else if len(data) > 0 {
			p = mustPool(t, fuzzSubnets[int(data[0])%len(fuzzSubnets)])
		} else {
			return
		}
		// Long inputs add nothing that short ones do not, and would slow
		// the fuzzer down: at most maxFuzzOps operations.
		const maxFuzzOps = 2000
		if len(data) > 1+maxFuzzOps {
			data = data[:1+maxFuzzOps]
		}
		checkPool(t, &p)
		l, _ := LayoutOf(p.Subnet)
		held := map[string]netip.Addr{} // what each key must keep
		maps.Copy(held, p.Assigned)
		for i := 1; i < len(data); i++ {
			b := data[i]
			key := fmt.Sprintf("k%d", (b/5)%12)
			before := p.Clone()
			var err error
			switch b % 5 {
			case 0, 1:
				var a netip.Addr
				a, err = p.Allocate(key)
				switch old, had := held[key]; {
				case err == nil && had && a != old:
					t.Fatalf("Allocate(%s) = %v, but it held %v", key, a, old)
				case err == nil:
					held[key] = a
				case had || !errors.Is(err, ErrFull) || before.Len() != before.Capacity():
					t.Fatalf("Allocate(%s) on %v: %v", key, before.Assigned, err)
				}
			case 2:
				var off byte
				if i+1 < len(data) {
					i++
					off = data[i]
				}
				want := fromU32(toU32(l.Network) + uint32(off))
				var a netip.Addr
				a, err = p.AllocateWant(key, want)
				switch old, had := held[key]; {
				case err == nil && a != want:
					t.Fatalf("AllocateWant(%s, %v) = %v", key, want, a)
				case err == nil && had && old != want:
					t.Fatalf("AllocateWant(%s, %v) succeeded, but it held %v", key, want, old)
				case err == nil:
					held[key] = a
				case !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTaken):
					t.Fatalf("AllocateWant(%s, %v): %v", key, want, err)
				}
			case 3:
				if _, had := held[key]; p.Release(key) != had {
					t.Fatalf("Release(%s): got the opposite of %v", key, had)
				}
				delete(held, key)
			case 4:
				js, _ := json.Marshal(p)
				var back Pool
				if e := json.Unmarshal(js, &back); e != nil || back.Subnet != p.Subnet || !maps.Equal(back.Assigned, p.Assigned) {
					t.Fatalf("JSON round trip of %+v: %s -> %+v, %v", p, js, back, e)
				}
				p = back
			}
			if err != nil && !reflect.DeepEqual(p, before) {
				t.Fatalf("a failed operation (%v) changed the pool from %v to %v", err, before.Assigned, p.Assigned)
			}
			if !maps.Equal(p.Assigned, held) {
				t.Fatalf("pool %v, want %v", p.Assigned, held)
			}
			checkPool(t, &p)
		}
	})
}

// refused checks that every method refuses a damaged pool with the same
// ErrInvalid error and leaves it as it was.
func refused(t *testing.T, p *Pool, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate: %v is not ErrInvalid", err)
	}
	before := p.Clone()
	for _, k := range []string{"k0", "new"} {
		if _, e := p.Allocate(k); e == nil || e.Error() != err.Error() {
			t.Fatalf("Allocate(%s) on a damaged pool: %v, want %v", k, e, err)
		}
		if _, e := p.AllocateWant(k, netip.AddrFrom4([4]byte{10, 0, 0, 9})); e == nil || e.Error() != err.Error() {
			t.Fatalf("AllocateWant(%s) on a damaged pool: %v, want %v", k, e, err)
		}
	}
	if !reflect.DeepEqual(*p, before) {
		t.Fatalf("a damaged pool was changed")
	}
	_ = p.Free() + p.Len() + p.Capacity() // must not panic
}
