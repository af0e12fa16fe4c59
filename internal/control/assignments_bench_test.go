package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store/bolt"
)

// BenchmarkCreateWithLongPolls creates workspaces one after another while
// a fake agent per host sits in its long poll for assignments (as real
// agents do, each answer followed by the next poll), and reports creates
// a second and how many polls each create woke. Run with a fixed count,
// e.g. -bench CreateWithLongPolls -benchtime 400x: each answer lists every
// workspace, so the cost grows with the count.
func BenchmarkCreateWithLongPolls(b *testing.B) {
	for _, hosts := range []int{0, 50} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) { benchCreate(b, hosts) })
	}
}

func benchCreate(b *testing.B, pollers int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "store.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctl, err := New(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), NodeTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	img := model.Image{Name: "img", Boot: "direct", Disk: model.ImageFile{Path: "/dev/null"}, DiskFormat: "raw",
		Kernel: &model.ImageFile{Path: "/dev/null"}, MinDisk: model.GiB}
	if err := ctl.RegisterImage(ctx, img, false); err != nil {
		b.Fatal(err)
	}
	nhosts := max(pollers, 50)
	for i := 0; i < nhosts; i++ {
		n := model.Node{Name: fmt.Sprintf("h%02d", i), Capacity: model.Resources{MilliCPU: 256000, Memory: 1024 * model.GiB, Disk: 100000 * model.GiB}}
		if _, err := ctl.RegisterNode(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
	if err := ctl.EnsureProject(ctx, "default"); err != nil {
		b.Fatal(err)
	}
	var wakes atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < pollers; i++ {
		node := fmt.Sprintf("h%02d", i)
		a, err := ctl.Assignments(ctx, node, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func(after int64) {
			defer wg.Done()
			for ctx.Err() == nil {
				a, err := ctl.Assignments(ctx, node, after, time.Minute)
				if err != nil {
					return
				}
				wakes.Add(1)
				after = a.Revision
			}
		}(a.Revision)
	}
	time.Sleep(100 * time.Millisecond) // the polls block
	wakes.Store(0)
	sp, err := spec.Parse([]byte("name: x\nimage: img\nquantum: {vcpus: 1, cpu: 0.25, memory: 256Mi, disk: 1Gi}\nduration: 2h\n"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		sp.Name = fmt.Sprintf("w%05d", i)
		if _, err := ctl.CreateWorkspace(ctx, "default", sp); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "creates/s")
	b.ReportMetric(float64(wakes.Load())/float64(b.N), "wakes/create")
	cancel()
	wg.Wait()
}
