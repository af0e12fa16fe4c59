package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// poolModel is the simplest pool there is: a map, and a scan of every
// address of the subnet for the lowest free one.
type poolModel struct {
	layout Layout
	m      map[string]netip.Addr
}

func (m *poolModel) lowestFree() (netip.Addr, bool) {
	taken := map[netip.Addr]bool{}
	for _, a := range m.m {
		taken[a] = true
	}
	for a := m.layout.First; a.Compare(m.layout.Last) <= 0; a = a.Next() {
		if !taken[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (m *poolModel) owner(a netip.Addr) (string, bool) {
	for k, b := range m.m {
		if a == b {
			return k, true
		}
	}
	return "", false
}

// checkPool checks the invariants every pool keeps: it validates, no two
// keys share an address, no address is reserved or outside the subnet,
// and Free()+Len() == Capacity().
func checkPool(t *testing.T, p *Pool) {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v (pool %v)", err, p.Assigned)
	}
	l, _ := LayoutOf(p.Subnet)
	seen := map[netip.Addr]string{}
	for k, a := range p.Assigned {
		if other, dup := seen[a]; dup {
			t.Fatalf("%s is held by %q and %q", a, other, k)
		}
		seen[a] = k
		if reason := l.problem(a); reason != "" {
			t.Fatalf("%q holds %s: %s", k, a, reason)
		}
	}
	if p.Free()+p.Len() != p.Capacity() || p.Capacity() != l.Capacity() {
		t.Fatalf("Free %d + Len %d != Capacity %d", p.Free(), p.Len(), p.Capacity())
	}
}

func TestPoolProperty(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 1))
		subnet := []string{"10.9.0.0/29", "10.9.0.0/28", "172.16.4.0/27", "192.168.0.0/24"}[seed%4]
		p := mustPool(t, subnet)
		model := poolModel{layout: mustLayout(t, subnet), m: map[string]netip.Addr{}}
		keys := 2 + int(seed%3)*p.Capacity()/2 // some runs fill the subnet, some cannot
		for step := range 400 {
			key := fmt.Sprintf("w%d", rng.IntN(keys))
			what := fmt.Sprintf("seed %d step %d", seed, step)
			switch op := rng.IntN(10); {
			case op < 5:
				got, err := p.Allocate(key)
				want, had := model.m[key]
				if !had {
					var ok bool
					if want, ok = model.lowestFree(); !ok {
						if !errors.Is(err, ErrFull) {
							t.Fatalf("%s: Allocate(%s) on a full pool = %v, %v; want ErrFull", what, key, got, err)
						}
						continue
					}
					model.m[key] = want
				}
				if err != nil || got != want {
					t.Fatalf("%s: Allocate(%s) = %v, %v; want %v", what, key, got, err, want)
				}
			case op < 7:
				// Anything from just before the subnet to just after it.
				off := rng.IntN(model.layout.Capacity()+5) - 1
				want := fromU32(toU32(model.layout.Network) + uint32(off))
				got, err := p.AllocateWant(key, want)
				cur, had := model.m[key]
				other, taken := model.owner(want)
				switch {
				case model.layout.problem(want) != "":
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("%s: AllocateWant(%s, %s) = %v, %v; want ErrInvalid", what, key, want, got, err)
					}
				case had && cur == want:
					if err != nil || got != want {
						t.Fatalf("%s: AllocateWant(%s, own %s) = %v, %v", what, key, want, got, err)
					}
				case had || taken:
					if !errors.Is(err, ErrTaken) {
						t.Fatalf("%s: AllocateWant(%s, %s) (held by %q) = %v, %v; want ErrTaken", what, key, want, other, got, err)
					}
				default:
					if err != nil || got != want {
						t.Fatalf("%s: AllocateWant(%s, %s) = %v, %v", what, key, want, got, err)
					}
					model.m[key] = want
				}
			case op < 9:
				_, had := model.m[key]
				if got := p.Release(key); got != had {
					t.Fatalf("%s: Release(%s) = %v, want %v", what, key, got, had)
				}
				delete(model.m, key)
			default:
				js, err := json.Marshal(p)
				if err != nil {
					t.Fatal(err)
				}
				var back Pool
				if err := json.Unmarshal(js, &back); err != nil {
					t.Fatalf("%s: unmarshal %s: %v", what, js, err)
				}
				if !maps.Equal(back.Assigned, p.Assigned) || back.Subnet != p.Subnet {
					t.Fatalf("%s: JSON round trip: got %+v, want %+v", what, back, p)
				}
				p = back
			}
			if !maps.Equal(p.Assigned, model.m) {
				t.Fatalf("%s: pool %v, model %v", what, p.Assigned, model.m)
			}
			checkPool(t, &p)
		}
	}
}

func TestVNIsProperty(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 2))
		v, _ := NewVNIs(DefaultMinVNI, DefaultMinVNI+uint32(seed%5)*3)
		model := map[string]uint32{}
		for step := range 300 {
			key := fmt.Sprintf("p/n%d", rng.IntN(12))
			what := fmt.Sprintf("seed %d step %d", seed, step)
			if rng.IntN(3) == 0 {
				_, had := model[key]
				if got := v.Release(key); got != had {
					t.Fatalf("%s: Release(%s) = %v, want %v", what, key, got, had)
				}
				delete(model, key)
			} else {
				got, err := v.Allocate(key)
				want, had := model[key]
				if !had {
					want = v.Min
					for taken := true; taken && want <= v.Max; {
						taken = false
						for _, n := range model {
							if n == want {
								taken = true
								want++
								break
							}
						}
					}
					if want > v.Max {
						if !errors.Is(err, ErrFull) {
							t.Fatalf("%s: Allocate(%s) on a full range = %d, %v", what, key, got, err)
						}
						continue
					}
					model[key] = want
				}
				if err != nil || got != want {
					t.Fatalf("%s: Allocate(%s) = %d, %v; want %d", what, key, got, err, want)
				}
			}
			if !maps.Equal(v.Assigned, model) || v.Validate() != nil || v.Free()+v.Len() != v.Capacity() {
				t.Fatalf("%s: VNIs %+v, model %v (validate %v)", what, v, model, v.Validate())
			}
		}
		js, _ := json.Marshal(v)
		var back VNIs
		if err := json.Unmarshal(js, &back); err != nil || !maps.Equal(back.Assigned, v.Assigned) || back.Min != v.Min || back.Max != v.Max {
			t.Fatalf("seed %d: JSON round trip: %s -> %+v, %v", seed, js, back, err)
		}
	}
}

func mustLayout(t testing.TB, subnet string) Layout {
	t.Helper()
	l, err := LayoutOf(prefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
