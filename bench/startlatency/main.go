// Command startlatency measures vgrid's start path against a running
// control plane (vgrid up): for N workspaces created one after another it
// records the control-plane plus agent overhead, from the API call to the
// QEMU process being exec'd, and the time until the guest agent reports
// ready. It prints p50/p90/p99/max and deletes what it created.
//
//	go run ./bench/startlatency -n 50
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"vgrid/bench/internal/benchkit"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

func main() {
	n := flag.Int("n", 50, "workspaces to start")
	cfgPath := flag.String("config", client.DefaultConfigPath(), "client config")
	image := flag.String("image", "vgrid-guest", "image")
	keep := flag.Int("keep", 1, "how many benchmark workspaces may run at once")
	cpu := flag.Float64("cpu", 1, "CPU cap of each workspace in cores")
	flag.Parse()
	if err := run(*n, *cfgPath, *image, *keep, *cpu); err != nil {
		fmt.Fprintln(os.Stderr, "startlatency:", err)
		os.Exit(1)
	}
}

func run(n int, cfgPath, image string, keep int, cpu float64) error {
	ctx := context.Background()
	cfg, err := client.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	cl, err := client.New(cfg)
	if err != nil {
		return err
	}
	prefix := fmt.Sprintf("bench-%d", time.Now().Unix()%100000)
	var overhead, server, ready []time.Duration
	var live []string
	defer func() {
		for _, name := range live {
			_ = cl.DeleteWorkspace(ctx, name)
		}
	}()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%02d", prefix, i)
		spec := fmt.Sprintf("name: %s\nimage: %s\nquantum: {vcpus: 1, cpu: %g, memory: 128Mi}\nduration: 10m\n", name, image, cpu)
		t0 := time.Now()
		if _, err := cl.CreateWorkspace(ctx, []byte(spec)); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		live = append(live, name)
		var w model.Workspace
		deadline := time.Now().Add(2 * time.Minute)
		for {
			w, err = cl.GetWorkspace(ctx, name)
			if err != nil {
				return err
			}
			if w.Status.State == model.StateFailed {
				return fmt.Errorf("%s failed: %s", name, w.Status.Reason)
			}
			if !w.Status.Timings.GuestReady.IsZero() && w.Status.State == model.StateRunning {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready after 2m (state %s)", name, w.Status.State)
			}
			time.Sleep(20 * time.Millisecond)
		}
		tm := w.Status.Timings
		overhead = append(overhead, tm.ProcessStarted.Sub(t0))
		server = append(server, tm.ProcessStarted.Sub(tm.Created))
		ready = append(ready, tm.GuestReady.Sub(t0))
		fmt.Fprintf(os.Stderr, "%s: qemu exec +%s, guest ready +%s\n", name,
			overhead[len(overhead)-1].Round(100*time.Microsecond), ready[len(ready)-1].Round(time.Millisecond))
		for len(live) >= keep {
			if err := cl.DeleteWorkspace(ctx, live[0]); err != nil {
				return err
			}
			// Wait until its resources are free again.
			for {
				if _, err := cl.GetWorkspace(ctx, live[0]); client.IsNotFound(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			live = live[1:]
		}
	}
	fmt.Printf("workspaces: %d (vcpus 1, cpu %g, memory 128Mi, image %s), at most %d running at once\n", n, cpu, image, keep)
	report("API call -> QEMU exec (client clock)", overhead)
	report("server accepted -> QEMU exec", server)
	report("API call -> guest agent ready", ready)
	return nil
}

func report(what string, ds []time.Duration) {
	s := benchkit.Sorted(ds)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	fmt.Printf("%-40s p50 %8s  p90 %8s  p99 %8s  max %8s\n", what,
		q(0.50).Round(100*time.Microsecond), q(0.90).Round(100*time.Microsecond),
		q(0.99).Round(100*time.Microsecond), s[len(s)-1].Round(100*time.Microsecond))
}
