package calendar

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"vgrid/internal/model"
)

// TestPlaceNowIsPlaceAt: on 300 hosts holding reservations, a sequence of
// starts at one clock within one pass, of random members, counts and
// lengths (each committed, so the slot table fills as in a pass), places
// every lease on the same hosts with the frontiers (first fit) or the
// hosts' misses (pack, spread) as placement without them does.
func TestPlaceNowIsPlaceAt(t *testing.T) {
	for _, pl := range []Placement{FirstFit, Pack, Spread} {
		t.Run(string(pl), func(t *testing.T) { testPlaceNow(t, pl) })
	}
}

func testPlaceNow(t *testing.T, pl Placement) {
	c, t0, _ := benchGrid(t, 300, 0, pl)
	now := tick(t0)
	c.passNo++
	rnd := rand.New(rand.NewSource(1))
	placed, refused := 0, 0
	for i := 0; i < 3000; i++ {
		n := 1 + rnd.Intn(3)
		if rnd.Intn(10) == 0 {
			n = 20 + rnd.Intn(200)
		}
		ms := make([]Request, n)
		for k := range ms {
			ms[k] = Request{Resources: model.Resources{MilliCPU: int64(1000 * (1 + rnd.Intn(8))), Memory: model.ByteSize(1+rnd.Intn(16)) * model.GiB}}
		}
		l := c.newLease(Lease{ID: fmt.Sprintf("x%d", i), Project: "p", Kind: BestEffort, Members: ms,
			Duration: time.Duration(10+rnd.Intn(300)) * time.Minute}, now)
		to := now + l.remaining
		want, wok := c.placeAt(l, now, to, true)
		got, gok := c.placeNow(l, now, to)
		if wok != gok || !sameHosts(want, got) {
			t.Fatalf("lease %d (%d members): placeNow %v %v, placeAt %v %v", i, n, names(got), gok, names(want), wok)
		}
		if !gok {
			refused++
			continue
		}
		placed++
		c.leases[l.ID] = l
		c.commit(l, got, now, now, to, 0, 0, false)
	}
	if placed == 0 || refused == 0 {
		t.Fatalf("placed %d, refused %d: the grid should fill", placed, refused)
	}
}
