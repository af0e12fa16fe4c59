package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"vgrid/internal/guest/image"
	"vgrid/internal/model"
)

func newNodeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "node", Aliases: []string{"nodes"}, Short: "Inspect hosts"}
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List hosts with capacity and allocation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			nodes, err := cl.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tREADY\tACCEL\tCPU (used/total)\tMEMORY (used/total)\tDISK (used/total)\tWORKSPACES")
			for _, n := range nodes {
				fmt.Fprintf(tw, "%s\t%v\t%s\t%.2f/%.2f\t%s/%s\t%s/%s\t%d\n", n.Name, n.Ready, n.Accel,
					float64(n.Allocated.MilliCPU)/1000, float64(n.Capacity.MilliCPU)/1000,
					n.Allocated.Memory.Human(), n.Capacity.Memory.Human(), n.Allocated.Disk.Human(), n.Capacity.Disk.Human(), n.Workspaces)
			}
			return tw.Flush()
		},
	})
	return c
}

func newImageCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "image", Aliases: []string{"images"}, Short: "Build, register and list images"}
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List registered images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			imgs, err := cl.Images(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tBOOT\tDISK\tFORMAT\tMIN DISK")
			for _, im := range imgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Name, im.Boot, model.ByteSize(im.Disk.Size), im.DiskFormat, im.MinDisk)
			}
			return tw.Flush()
		},
	})
	var out, agentBin, kernel, name string
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the vgrid guest image (kernel, initrd, ext4 root with the guest agent) reproducibly",
		Long: `Build the small vgrid guest image from this machine's Debian packages:
the cloud kernel (linux-image-cloud-amd64, extracted to an uncompressed
vmlinux for fast direct boot), busybox-static, and the static vgrid guest
agent. Building twice gives identical files. Put it under
<data-dir>/images/<name> and vgrid up registers it at start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if agentBin == "" {
				return fmt.Errorf("--agent: path of the static vgrid-guest-agent binary (make guest-agent builds it)")
			}
			img, err := image.Build(cmd.Context(), image.Options{OutDir: out, Name: name, KernelImage: kernel,
				AgentBinary: agentBin, Log: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s built in %s (disk %s, kernel %s)\n", img.Name, out,
				model.ByteSize(img.Disk.Size), filepath.Base(img.Kernel.Path))
			return nil
		},
	}
	build.Flags().StringVar(&out, "out", filepath.Join(defaultDataDir(), "images", "vgrid-guest"), "output directory")
	build.Flags().StringVar(&agentBin, "agent", "", "static vgrid-guest-agent binary")
	build.Flags().StringVar(&kernel, "kernel", "", "kernel bzImage (default: the newest /boot/vmlinuz-*-cloud-amd64)")
	build.Flags().StringVar(&name, "name", "vgrid-guest", "image name")
	c.AddCommand(build, newImageImportCmd(g))
	return c
}

func newProjectCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "project", Short: "Manage projects (admin)"}
	c.AddCommand(&cobra.Command{
		Use:   "create NAME",
		Short: "Create a project and print its first user token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			t, err := cl.CreateProject(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	})
	return c
}

func newTokenCmd(g *globals) *cobra.Command {
	var project, role string
	c := &cobra.Command{Use: "token", Short: "Manage tokens (admin)"}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print it (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			t, err := cl.CreateToken(cmd.Context(), project, role)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	create.Flags().StringVar(&project, "project", "default", "project")
	create.Flags().StringVar(&role, "role", "user", "user, admin, or join (for registering a host agent)")
	c.AddCommand(create)
	return c
}
