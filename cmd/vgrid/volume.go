package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"vgrid/api"
	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

func newVolumeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "volume", Aliases: []string{"volumes", "vol"}, Short: "Network volumes of your project: disks that outlive workspaces"}
	c.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	c.AddCommand(volumeCreate(g), volumeList(g), volumeGet(g), volumeDelete(g), volumeResize(g), volumeSnapshot(g))
	return c
}

func volumeCreate(g *globals) *cobra.Command {
	var size, node string
	var iops, bps int64
	var noWait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "create NAME --size SIZE",
		Short: "Create a volume on a storage host vgrid chooses; attach it with volumes: in a workspace spec",
		Example: "  vgrid volume create data --size 10Gi\n" +
			"  vgrid volume create logs --size 2Gi --iops 500 --bps 52428800",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sz, err := model.ParseByteSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			v, err := cl.CreateVolume(cmd.Context(), api.VolumesPost{Name: args[0], Size: sz, IOPS: iops, BPS: bps, Node: node})
			if err != nil {
				return err
			}
			if !noWait {
				if v, err = waitVolume(cmd.Context(), cl, v.Name, timeout); err != nil {
					return err
				}
			}
			return printVolume(cmd.OutOrStdout(), g.output, v)
		},
	}
	c.Flags().StringVar(&size, "size", "", "size, e.g. 10Gi (required)")
	c.Flags().Int64Var(&iops, "iops", 0, "cap each attachment's I/O operations per second (0: none)")
	c.Flags().Int64Var(&bps, "bps", 0, "cap each attachment's bytes per second (0: none)")
	c.Flags().StringVar(&node, "node", "", "storage host (admins only; default: the host with the most room)")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return at once instead of waiting until the volume is ready")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait")
	_ = c.MarkFlagRequired("size")
	return c
}

// waitVolume polls a volume until it is ready (or failed).
func waitVolume(ctx context.Context, cl *client.Client, name string, timeout time.Duration) (model.Volume, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wt := newWaiter(os.Stderr, "waiting for volume "+name)
	defer wt.done()
	for {
		v, err := cl.GetVolume(ctx, name)
		if err != nil {
			return v, err
		}
		wt.status(fmt.Sprintf("%s: %s on %s", name, v.State, v.Node))
		switch v.State {
		case model.VolumeReady:
			return v, nil
		case model.VolumeFailed:
			return v, fmt.Errorf("volume %s failed: %s", name, v.Reason)
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("gave up waiting for volume %s after %s (it is %s on %s)", name, timeout, v.State, v.Node)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func volumeList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the project's volumes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			list, err := cl.Volumes(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), api.VolumeList{Volumes: list})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSIZE\tSTATE\tNODE\tATTACHED\tSNAPSHOT OF")
			for _, v := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Size, v.State, v.Node, dash(strings.Join(v.Attached, ",")), dash(v.SnapshotOf))
			}
			return tw.Flush()
		},
	}
}

func volumeGet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a volume: size, state, storage host, endpoint, the workspaces attaching it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			v, err := cl.GetVolume(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printVolume(cmd.OutOrStdout(), g.output, v)
		},
	}
}

func volumeDelete(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a volume and its data (refused while a workspace attaches it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			if _, err := cl.DeleteVolume(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "volume %s deleting (its storage host removes it)\n", args[0])
			return nil
		},
	}
}

func volumeResize(g *globals) *cobra.Command {
	var size string
	c := &cobra.Command{
		Use:     "resize NAME --size SIZE",
		Short:   "Grow a volume (volumes never shrink)",
		Example: "  vgrid volume resize data --size 20Gi",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sz, err := model.ParseByteSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			v, err := cl.ResizeVolume(cmd.Context(), args[0], sz)
			if err != nil {
				return err
			}
			return printVolume(cmd.OutOrStdout(), g.output, v)
		},
	}
	c.Flags().StringVar(&size, "size", "", "the new size, e.g. 20Gi (required)")
	_ = c.MarkFlagRequired("size")
	return c
}

func volumeSnapshot(g *globals) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:     "snapshot NAME --to NEW",
		Short:   "Make a new volume with the volume's content now",
		Example: "  vgrid volume snapshot data --to data-monday",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			v, err := cl.SnapshotVolume(cmd.Context(), args[0], to)
			if err != nil {
				return err
			}
			return printVolume(cmd.OutOrStdout(), g.output, v)
		},
	}
	c.Flags().StringVar(&to, "to", "", "name of the new volume (required)")
	_ = c.MarkFlagRequired("to")
	return c
}

func printVolume(w io.Writer, output string, v model.Volume) error {
	if output == "json" {
		return printJSON(w, v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", v.Name)
	fmt.Fprintf(tw, "ID:\t%s\n", v.ID)
	fmt.Fprintf(tw, "Size:\t%s\n", v.Size)
	state := string(v.State)
	if v.Reason != "" {
		state += " (" + v.Reason + ")"
	}
	fmt.Fprintf(tw, "State:\t%s\n", state)
	fmt.Fprintf(tw, "Storage host:\t%s\n", v.Node)
	if e := v.Endpoint; e != nil {
		fmt.Fprintf(tw, "Endpoint:\tnbd+tls %s:%d export %s\n", e.Host, e.Port, e.Export)
	}
	if v.IOPS > 0 || v.BPS > 0 {
		fmt.Fprintf(tw, "Caps:\t%d IOPS, %d bytes/s (0: none)\n", v.IOPS, v.BPS)
	}
	if v.SnapshotOf != "" {
		fmt.Fprintf(tw, "Snapshot of:\t%s\n", v.SnapshotOf)
	}
	fmt.Fprintf(tw, "Attached:\t%s\n", dash(strings.Join(v.Attached, ", ")))
	fmt.Fprintf(tw, "Created:\t%s\n", v.CreatedAt.Format("2006-01-02 15:04:05 MST"))
	return tw.Flush()
}

// storageListenOf is the agent's storage address from --storage-listen:
// auto is port 10809 on --address (none without one), off or empty none.
func storageListenOf(flag, address string) string {
	switch flag {
	case "auto":
		return agent.DefaultStorageListen(address)
	case "off", "":
		return ""
	}
	return flag
}
