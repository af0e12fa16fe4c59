package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"vgrid/internal/client"
	"vgrid/internal/model"
)

func newWorkspaceCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "workspace",
		Aliases: []string{"ws", "workspaces"},
		Short:   "Create, inspect, stop, start and delete workspaces",
	}
	c.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	c.AddCommand(wsCreate(g), wsList(g), wsGet(g), wsStop(g), wsStart(g), wsDelete(g), wsLogs(g), wsEvents(g), wsExec(g), wsMigrate(g), wsResize(g), wsSave(g))
	return c
}

func wsCreate(g *globals) *cobra.Command {
	var file string
	var wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "create -f FILE",
		Short: "Create a workspace from a spec file (YAML or JSON; - for stdin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f FILE is required")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(os.Stdin)
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			w, err := cl.CreateWorkspace(ctx, data)
			if err != nil {
				return err
			}
			waiting := w.Status.State == model.StateQueued || w.Status.State == model.StateScheduled
			if g.output != "json" {
				if waiting {
					fmt.Fprintf(os.Stderr, "workspace %s created (id %s), %s (%s lease): see vgrid lease get %s\n",
						w.Spec.Name, w.ID, strings.ToLower(string(w.Status.State)), w.Spec.LeaseKind(), w.Spec.Name)
				} else {
					fmt.Fprintf(os.Stderr, "workspace %s created (id %s), placed on %s\n", w.Spec.Name, w.ID, w.Status.Node)
				}
			}
			if wait && !waiting {
				if w, err = waitFor(ctx, cl, w.Spec.Name, timeout, func(w model.Workspace) (bool, error) {
					switch w.Status.State {
					case model.StateRunning:
						return true, nil
					case model.StateFailed, model.StateStopped:
						return true, fmt.Errorf("workspace %s is %s: %s", w.Spec.Name, w.Status.State, w.Status.Reason)
					}
					return false, nil
				}); err != nil {
					return err
				}
			}
			return printWorkspace(cmd.OutOrStdout(), g.output, w)
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "spec file")
	c.Flags().BoolVar(&wait, "wait", true, "wait until the guest is ready")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	return c
}

// waitFor polls a workspace until done says so, showing progress.
func waitFor(ctx context.Context, cl *client.Client, name string, timeout time.Duration, done func(model.Workspace) (bool, error)) (model.Workspace, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wt := newWaiter(os.Stderr, "waiting for "+name)
	defer wt.done()
	for {
		w, err := cl.GetWorkspace(ctx, name)
		if err != nil {
			return w, err
		}
		wt.status(fmt.Sprintf("%s: %s", name, describeProgress(w)))
		if ok, err := done(w); ok || err != nil {
			return w, err
		}
		select {
		case <-ctx.Done():
			return w, fmt.Errorf("gave up waiting for %s after %s (state %s)", name, timeout, w.Status.State)
		case <-time.After(150 * time.Millisecond):
		}
	}
}

func describeProgress(w model.Workspace) string {
	if w.Status.Migration != nil {
		return describeMigration(w)
	}
	switch w.Status.State {
	case model.StatePending:
		return "Pending: waiting for host " + w.Status.Node
	case model.StateStarting:
		return fmt.Sprintf("Starting: QEMU pid %d booting the guest", w.Status.PID)
	}
	return string(w.Status.State)
}

func wsList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the project's workspaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			list, err := cl.ListWorkspaces(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"workspaces": list})
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Spec.Name < list[j].Spec.Name })
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tHOST\tVCPU\tCPU\tMEMORY\tDISK\tIMAGE\tADDRESS\tLEASE LEFT")
			for _, w := range list {
				q := w.Spec.Quantum
				addr := "-"
				if w.Status.State == model.StateRunning && w.Status.Guest != nil && len(w.Status.Guest.Addresses) > 0 {
					addr = w.Status.Guest.Addresses[0]
				}
				left := "-"
				if !w.Status.ExpiresAt.IsZero() && w.Desired == model.DesiredRunning {
					left = time.Until(w.Status.ExpiresAt).Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f\t%s\t%s\t%s\t%s\t%s\n", w.Spec.Name, w.Status.State, w.Status.Node,
					q.VCPUs, q.CPUCores(), q.Memory, q.Disk, w.Spec.Image, addr, left)
			}
			return tw.Flush()
		},
	}
}

func wsGet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a workspace: state, host, quantum, and what the guest reports",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			if g.output == "json" {
				raw, err := cl.GetWorkspaceRaw(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			w, err := cl.GetWorkspace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printWorkspace(cmd.OutOrStdout(), g.output, w)
		},
	}
}

func wsStop(g *globals) *cobra.Command {
	return lifecycleCmd(g, "stop", "Stop a workspace (ACPI power-off, then kill); its disk is kept",
		func(ctx context.Context, cl *client.Client, name string) error {
			_, err := cl.StopWorkspace(ctx, name)
			return err
		},
		func(w model.Workspace) (bool, error) {
			return w.Status.State == model.StateStopped || w.Status.State == model.StateFailed, nil
		})
}

func wsStart(g *globals) *cobra.Command {
	return lifecycleCmd(g, "start", "Start a stopped workspace for a new lease of its duration",
		func(ctx context.Context, cl *client.Client, name string) error {
			_, err := cl.StartWorkspace(ctx, name)
			return err
		},
		func(w model.Workspace) (bool, error) {
			if w.Status.State == model.StateFailed {
				return true, fmt.Errorf("workspace %s failed: %s", w.Spec.Name, w.Status.Reason)
			}
			return w.Status.State == model.StateRunning, nil
		})
}

func wsDelete(g *globals) *cobra.Command {
	return lifecycleCmd(g, "delete", "Delete a workspace and its disk",
		func(ctx context.Context, cl *client.Client, name string) error {
			return cl.DeleteWorkspace(ctx, name)
		}, nil)
}

// lifecycleCmd is a verb that asks for a change, then waits for it.
func lifecycleCmd(g *globals, verb, short string, do func(context.Context, *client.Client, string) error, done func(model.Workspace) (bool, error)) *cobra.Command {
	var wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			if err := do(ctx, cl, name); err != nil {
				return err
			}
			if !wait {
				fmt.Fprintf(os.Stderr, "%s %s: requested\n", verb, name)
				return nil
			}
			if done == nil { // delete: wait until it is gone
				_, err := waitFor(ctx, cl, name, timeout, func(model.Workspace) (bool, error) { return false, nil })
				if client.IsNotFound(err) {
					fmt.Fprintf(os.Stderr, "workspace %s deleted\n", name)
					return nil
				}
				return err
			}
			w, err := waitFor(ctx, cl, name, timeout, done)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "workspace %s is %s\n", name, w.Status.State)
			return nil
		},
	}
	c.Flags().BoolVar(&wait, "wait", true, "wait until done")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait")
	return c
}

func wsLogs(g *globals) *cobra.Command {
	var follow bool
	c := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the workspace's serial console",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var printed []byte
			for {
				b, err := cl.WorkspaceLogs(ctx, args[0])
				if err != nil {
					return err
				}
				// The server keeps a tail: print what is new since last time.
				out := b
				if i := overlap(printed, b); i > 0 {
					out = b[i:]
				}
				cmd.OutOrStdout().Write(out)
				printed = b
				if !follow {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	return c
}

// overlap returns how much of the start of next was already printed as the
// end of prev.
func overlap(prev, next []byte) int {
	if len(prev) == 0 {
		return 0
	}
	if strings.HasPrefix(string(next), string(prev)) {
		return len(prev)
	}
	tail := prev[max(0, len(prev)-256):]
	if i := strings.LastIndex(string(next), string(tail)); i >= 0 {
		return i + len(tail)
	}
	return 0
}

func wsEvents(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "events NAME",
		Short: "Print the workspace's history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			evs, err := cl.WorkspaceEvents(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"events": evs})
			}
			for _, e := range evs {
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %-9s %s\n", e.Time.Local().Format("15:04:05.000"), e.Type, e.Message)
			}
			return nil
		},
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printWorkspace prints one workspace for a person, or as JSON.
func printWorkspace(out io.Writer, format string, w model.Workspace) error {
	if format == "json" {
		return printJSON(out, w)
	}
	q := w.Spec.Quantum
	st := w.Status
	tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Name", w.Spec.Name)
	row("Project", w.Project)
	state := string(st.State)
	if st.Reason != "" {
		state += " (" + st.Reason + ")"
	}
	row("State", state)
	row("Host", fmt.Sprintf("%s %s", st.Node, st.Accel))
	if m := st.Move; m != nil {
		what := "disk"
		if m.Memory {
			what = "disk and saved memory"
		}
		prog := "waiting for the copy to begin"
		if m.Bytes > 0 {
			prog = fmt.Sprintf("%s of %s copied (%d%%)", model.ByteSize(m.Done).Human(), model.ByteSize(m.Bytes).Human(), m.Done*100/m.Bytes)
		}
		row("Moving", fmt.Sprintf("%s from %s to %s: %s", what, m.From, st.Node, prog))
	}
	if st.ResumeOn != "" {
		row("Moving", fmt.Sprintf("to %s once its memory is saved on %s", st.ResumeOn, st.Node))
	}
	if st.Migration != nil {
		row("Migrating", describeMigration(w)+" (since "+st.Migration.Since.Local().Format(time.TimeOnly)+", "+st.Migration.Why+")")
	}
	row("Image", w.Spec.Image)
	quantum := fmt.Sprintf("%d vCPU, CPU cap %.2f cores, memory %s, disk %s", q.VCPUs, q.CPUCores(), q.Memory, q.Disk)
	if q.DiskIOPS > 0 || q.DiskBPS > 0 {
		quantum += fmt.Sprintf(", disk I/O %d IOPS %s/s", q.DiskIOPS, q.DiskBPS)
	}
	if q.Bandwidth > 0 {
		quantum += ", bandwidth " + q.Bandwidth.String()
	}
	if q.MaxMemory > q.Memory {
		quantum += ", max memory " + q.MaxMemory.Human()
	}
	if st.Applied != nil && *st.Applied != q && w.Desired == model.DesiredRunning {
		quantum += " (resizing: the host enforces " + fmt.Sprintf("CPU cap %.2f cores, memory %s, disk %s", st.Applied.CPUCores(), st.Applied.Memory, st.Applied.Disk) + ")"
	}
	row("Quantum", quantum)
	lease := w.Spec.Duration.String()
	if !st.ExpiresAt.IsZero() {
		lease += fmt.Sprintf(", started %s, ends %s", st.StartedAt.Local().Format(time.DateTime), st.ExpiresAt.Local().Format(time.DateTime))
	}
	if k := w.Spec.LeaseKind(); k != model.LeaseImmediate {
		lease += " (" + string(k) + ")"
	}
	if st.Suspensions > 0 {
		lease += fmt.Sprintf(", suspended %d times", st.Suspensions)
	}
	row("Lease", lease)
	if st.PID > 0 {
		row("Process", fmt.Sprintf("QEMU pid %d", st.PID))
	}
	if len(st.Cgroup) > 0 {
		keys := make([]string, 0, len(st.Cgroup))
		for k := range st.Cgroup {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+st.Cgroup[k])
		}
		row("Cgroup", strings.Join(parts, " "))
	}
	if g := st.Guest; g != nil {
		row("Guest", fmt.Sprintf("%d vCPU, %d MiB memory (MemTotal), disk %s, hostname %s",
			g.VCPUs, g.MemoryMiB, model.ByteSize(g.DiskBytes), g.Hostname))
		row("Addresses", strings.Join(g.Addresses, ", "))
		row("Guest kernel", g.Kernel)
	}
	t := st.Timings
	if !t.ProcessStarted.IsZero() {
		s := fmt.Sprintf("QEMU started %s after the request", t.ProcessStarted.Sub(t.Created).Round(time.Millisecond))
		if !t.GuestReady.IsZero() {
			s += fmt.Sprintf(", guest ready after %s", t.GuestReady.Sub(t.Created).Round(time.Millisecond))
		}
		row("Timings", s)
	}
	if !t.Suspended.IsZero() {
		s := fmt.Sprintf("suspended %s (%s saved in %s)", t.Suspended.Local().Format(time.DateTime), model.ByteSize(t.SuspendBytes), t.SuspendTook)
		if !t.Resumed.IsZero() {
			s += fmt.Sprintf(", resumed %s in %s", t.Resumed.Local().Format(time.DateTime), t.ResumeTook)
		}
		row("Suspension", s)
	}
	return tw.Flush()
}
