package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

func wsMigrate(g *globals) *cobra.Command {
	var to, bandwidth, mode string
	var cancel, wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "migrate NAME [--to HOST]",
		Short: "Move a running workspace live to another host (the calendar's choice unless --to), or --cancel the move under way",
		Long: `Move a running workspace live to another host: its disk is mirrored and its
memory copied while the guest runs, then it pauses for a moment and goes on
there with the same addresses, MACs, quantum and uptime. Without --to the
calendar chooses a host with room for it until its lease ends. The command
shows the progress and ends with the downtime and the total time; a failed
or cancelled migration leaves the guest running where it was.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			if cancel {
				if to != "" {
					return fmt.Errorf("--cancel and --to: give one")
				}
				w, err := cl.CancelMigration(ctx, name)
				if err != nil {
					return err
				}
				if !wait {
					return printWorkspace(cmd.OutOrStdout(), g.output, w)
				}
				w, err = waitFor(ctx, cl, name, timeout, func(w model.Workspace) (bool, error) { return w.Status.Migration == nil, nil })
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "migration of %s cancelled: it runs on %s\n", name, w.Status.Node)
				return printWorkspace(cmd.OutOrStdout(), g.output, w)
			}
			req := api.MigrateRequest{To: to, Mode: mode}
			if bandwidth != "" {
				if req.Bandwidth, err = model.ParseBitRate(bandwidth); err != nil {
					return fmt.Errorf("--bandwidth: %w", err)
				}
			}
			w, err := cl.MigrateWorkspace(ctx, name, req)
			if err != nil {
				return err
			}
			m := w.Status.Migration
			if m == nil {
				return fmt.Errorf("the control plane recorded no migration of %s", name)
			}
			from, dest, since := w.Status.Node, m.To, m.Since
			fmt.Fprintf(cmd.ErrOrStderr(), "migrating %s live from %s to %s\n", name, from, dest)
			if !wait {
				return printWorkspace(cmd.OutOrStdout(), g.output, w)
			}
			w, err = waitMigration(ctx, cl, name, timeout)
			if err != nil {
				return err
			}
			return migrationOutcome(ctx, cmd, cl, g, w, from, dest, since)
		},
	}
	c.Flags().StringVar(&to, "to", "", "destination host (default: the calendar's choice)")
	c.Flags().StringVar(&bandwidth, "bandwidth", "", "cap the migration stream (e.g. 200Mbit; default: none)")
	c.Flags().StringVar(&mode, "mode", "", "how memory is copied: live (while the guest runs) or paused (the guest paused for the copy); default: the host's (live under KVM, paused under TCG)")
	c.Flags().BoolVar(&cancel, "cancel", false, "stop the migration under way; the guest runs on where it was")
	c.Flags().BoolVar(&wait, "wait", true, "wait for the outcome, showing progress")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait")
	return c
}

// waitMigration waits until the workspace's migration ended, showing its
// progress.
func waitMigration(ctx context.Context, cl *client.Client, name string, timeout time.Duration) (model.Workspace, error) {
	return waitFor(ctx, cl, name, timeout, func(w model.Workspace) (bool, error) { return w.Status.Migration == nil, nil })
}

// migrationOutcome prints how the migration since of w (from → dest)
// ended: its event says (downtime, total time, or why it failed).
func migrationOutcome(ctx context.Context, cmd *cobra.Command, cl *client.Client, g *globals, w model.Workspace, from, dest string, since time.Time) error {
	evs, _ := cl.WorkspaceEvents(ctx, w.Spec.Name)
	var last *model.Event
	for i := range evs {
		e := evs[i]
		if (e.Type == "migrated" || e.Type == "migration-failed") && !e.Time.Before(since) {
			last = &evs[i]
		}
	}
	if w.Status.Node == dest {
		msg := "migrated " + w.Spec.Name + " from " + from + " to " + dest
		if last != nil && last.Type == "migrated" {
			msg = "migrated " + w.Spec.Name + ": " + last.Message
		}
		fmt.Fprintln(cmd.ErrOrStderr(), msg)
		return printWorkspace(cmd.OutOrStdout(), g.output, w)
	}
	why := "see vgrid workspace events " + w.Spec.Name
	if last != nil && last.Type == "migration-failed" {
		why = last.Message
	}
	_ = printWorkspace(cmd.OutOrStdout(), g.output, w)
	return fmt.Errorf("migration of %s to %s did not complete: %s", w.Spec.Name, dest, why)
}

// describeMigration is a migration's progress as one line.
func describeMigration(w model.Workspace) string {
	m := w.Status.Migration
	s := fmt.Sprintf("migrating %s -> %s: %s", w.Status.Node, m.To, m.Phase)
	if m.Cancel {
		s += " (cancelling)"
	}
	p := m.Progress
	if p == nil {
		if m.Phase == model.MigrationPreparing {
			s += " (the destination prepares its disk, network and QEMU)"
		}
		return s
	}
	switch p.Phase {
	case "disk":
		s += fmt.Sprintf(", disk %s %s of %s", bar(p.DiskDone, p.DiskTotal, 20), model.ByteSize(p.DiskDone).Human(), model.ByteSize(p.DiskTotal).Human())
	default:
		s += fmt.Sprintf(", %s: memory %s sent of %s", p.Phase, model.ByteSize(p.MemoryTransferred).Human(), model.ByteSize(p.MemoryTotal).Human())
		if p.MemoryTotal > 0 {
			s += " " + bar(p.MemoryTotal-p.MemoryRemaining, p.MemoryTotal, 20)
		}
		s += fmt.Sprintf(", %s left, dirtied at %s/s, pass %d", model.ByteSize(p.MemoryRemaining).Human(), model.ByteSize(p.DirtyRate).Human(), p.Passes)
	}
	return s
}

// bar draws done of total as a bar of width cells.
func bar(done, total int64, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", width) + "]"
	}
	n := int(min(max(done, 0), total) * int64(width) / total)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func wsResize(g *globals) *cobra.Command {
	var cpu float64
	var vcpus int
	var memory, disk, bandwidth, bps string
	var iops int64
	var allowMigrate, wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "resize NAME [--cpu 1.5] [--memory 2Gi] [--vcpus 4] [--disk 20Gi] [--bandwidth 200Mbit] [--iops N] [--bps 50Mi]",
		Short: "Change a workspace's quantum; a running one is resized in place if its host can hold it until the lease ends",
		Long: `Change a workspace's quantum. A running workspace is resized in place: CPU
cap (cgroup), memory (balloon, up to the max_memory it started with), disk
(grown online, with the guest's filesystem), I/O and bandwidth caps. A
growth is admitted only if the host can hold the new quantum for the rest of
the lease without breaking any reservation already admitted; else it is
refused, naming the lease in the way, when it starts, and the largest size
possible now, or, with --allow-migrate, carried out by moving the guest live
to a host that can. Shrinking frees room for the queue at once. A workspace
that is not running takes the new quantum at its next start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req api.ResizeRequest
			f := cmd.Flags()
			if f.Changed("cpu") {
				req.CPU = &cpu
			}
			if f.Changed("vcpus") {
				req.VCPUs = &vcpus
			}
			for _, s := range []struct {
				flag, v string
				dst     **model.ByteSize
			}{{"memory", memory, &req.Memory}, {"disk", disk, &req.Disk}, {"bps", bps, &req.DiskBPS}} {
				if !f.Changed(s.flag) {
					continue
				}
				b, err := model.ParseByteSize(s.v)
				if err != nil {
					return fmt.Errorf("--%s: %w", s.flag, err)
				}
				*s.dst = &b
			}
			if f.Changed("bandwidth") {
				b, err := model.ParseBitRate(bandwidth)
				if err != nil {
					return fmt.Errorf("--bandwidth: %w", err)
				}
				req.Bandwidth = &b
			}
			if f.Changed("iops") {
				req.DiskIOPS = &iops
			}
			req.AllowMigrate = allowMigrate
			cl, err := g.dial()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			w, err := cl.ResizeWorkspace(ctx, name, req)
			if err != nil {
				return err
			}
			if m := w.Status.Migration; m != nil {
				from, dest, since := w.Status.Node, m.To, m.Since
				fmt.Fprintf(cmd.ErrOrStderr(), "%s has no room for the new quantum until the lease ends: migrating %s live to %s\n", from, name, dest)
				if !wait {
					return printWorkspace(cmd.OutOrStdout(), g.output, w)
				}
				if w, err = waitMigration(ctx, cl, name, timeout); err != nil {
					return err
				}
				if err := migrationOutcome(ctx, cmd, cl, g, w, from, dest, since); err != nil {
					return err
				}
			}
			if !wait || w.Desired != model.DesiredRunning || w.Status.Node == "" {
				if w.Desired != model.DesiredRunning {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s does not run: the new quantum applies from its next start\n", name)
				}
				return printWorkspace(cmd.OutOrStdout(), g.output, w)
			}
			want := w.Spec.Quantum
			w, err = waitFor(ctx, cl, name, timeout, func(w model.Workspace) (bool, error) {
				if w.Status.State != model.StateRunning && w.Status.State != model.StateStarting {
					return true, fmt.Errorf("workspace %s is %s: %s", name, w.Status.State, w.Status.Reason)
				}
				return w.Status.Applied != nil && *w.Status.Applied == want, nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "resized %s on %s\n", name, w.Status.Node)
			return printWorkspace(cmd.OutOrStdout(), g.output, w)
		},
	}
	c.Flags().Float64Var(&cpu, "cpu", 0, "CPU cap in cores (e.g. 1.5)")
	c.Flags().IntVar(&vcpus, "vcpus", 0, "vCPUs (only while stopped: a running guest keeps its vCPUs)")
	c.Flags().StringVar(&memory, "memory", "", "memory (e.g. 2Gi; a running guest up to its max_memory)")
	c.Flags().StringVar(&disk, "disk", "", "root disk size (grows only, e.g. 20Gi)")
	c.Flags().StringVar(&bandwidth, "bandwidth", "", "network cap each way (e.g. 200Mbit; 0 for none)")
	c.Flags().Int64Var(&iops, "iops", 0, "disk I/O operations per second cap (0 for none)")
	c.Flags().StringVar(&bps, "bps", "", "disk bytes per second cap (e.g. 50Mi; 0 for none)")
	c.Flags().BoolVar(&allowMigrate, "allow-migrate", false, "when the host cannot hold the growth until the lease ends, move the guest live to a host that can")
	c.Flags().BoolVar(&wait, "wait", true, "wait until the host enforces the new quantum")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait")
	return c
}
