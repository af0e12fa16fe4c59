package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"vgrid/api"
	"vgrid/internal/guest/image"
	"vgrid/internal/model"
)

func newNodeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "node", Aliases: []string{"nodes"}, Short: "Inspect and administer hosts"}
	c.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List hosts: state, capacity, allocated, free, agent version, last heartbeat, certificate expiry",
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
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), api.NodeList{Nodes: nodes})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tACCEL\tCPU (used/total)\tMEMORY (used/total)\tFREE CPU/MEM\tWORKSPACES\tAGENT\tHEARTBEAT\tCERT EXPIRES")
			for _, n := range nodes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f/%.2f\t%s/%s\t%.2f/%s\t%d\t%s\t%s ago\t%s\n", n.Name, nodeState(n), n.Accel,
					float64(n.Allocated.MilliCPU)/1000, float64(n.Capacity.MilliCPU)/1000,
					n.Allocated.Memory.Human(), n.Capacity.Memory.Human(), float64(n.Free.MilliCPU)/1000, n.Free.Memory.Human(), n.Workspaces,
					dash(n.AgentVersion), time.Since(n.LastHeartbeat).Round(time.Second), certExpiry(n.CertificateExpiresAt))
			}
			return tw.Flush()
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "get NAME",
		Short: "Show one host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			n, err := cl.Node(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printNode(cmd.OutOrStdout(), g.output, n)
		},
	})
	for _, on := range []bool{true, false} {
		use, short := "cordon NAME", "Cordon a host (admin): it keeps what it runs but is given nothing new"
		if !on {
			use, short = "uncordon NAME", "Lift a host's cordon (admin)"
		}
		c.AddCommand(&cobra.Command{
			Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := g.dial()
				if err != nil {
					return err
				}
				n, err := cl.CordonNode(cmd.Context(), args[0], on)
				if err != nil {
					return err
				}
				return printNode(cmd.OutOrStdout(), g.output, n)
			},
		})
	}
	c.AddCommand(&cobra.Command{
		Use:   "delete NAME",
		Short: "Forget a host that has no workspaces (admin): its record, node tokens and certificates",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			out, err := cl.DeleteNode(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s deleted (%d node token(s), %d certificate(s) revoked)\n", out.Node, out.TokensRevoked, out.CertificatesRevoked)
			return nil
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "drain NAME",
		Short: "Drain a host (admin): cordon it and move its workspaces to other hosts",
		Long: `Cordon the host and move every workspace off it with the means there
are: a running best-effort workspace is suspended and resumes on another
host (its disk and saved memory copied there) as soon as the calendar finds
room; a suspended one resumes elsewhere likewise. Running leases of other
kinds are left (moving them needs live migration), and so are stopped
workspaces (their disk moves when they are started again). The answer says
what was done with each one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			out, err := cl.DrainNode(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s cordoned; %d workspace(s) on it\n", out.Node, len(out.Moves))
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROJECT\tWORKSPACE\tACTION\tWHY")
			for _, m := range out.Moves {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Project, m.Workspace, m.Action, m.Reason)
			}
			return tw.Flush()
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a host (admin): its node tokens stop working at once",
		Long: `Revoke every node token of a host at once. The host may then join again
with a join token that has not registered its name before (vgrid token
create --role join; vgrid agent --join-token-file ...). The host's record
and the workspaces placed on it stay as they are: a host registering
again under that name is given them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			out, err := cl.RevokeNode(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s revoked (%d node token(s)); it may join again with a new join token\n", out.Node, out.TokensRevoked)
			return nil
		},
	})
	return c
}

func newImageCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "image", Aliases: []string{"images"}, Short: "Build, register, push, pull and list images"}
	addImageRepoCmds(c, g)
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
	var workspaces int
	limits := &cobra.Command{
		Use:   "limits NAME --workspaces N",
		Short: "Set a project's own object limits (0: the site default)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			var got map[string]any
			if err := cl.Do(cmd.Context(), "PUT", "/projects/"+args[0]+"/limits", map[string]int{"workspaces": workspaces}, &got); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "project %s: at most %d workspaces (0: the site default)\n", args[0], workspaces)
			return nil
		},
	}
	limits.Flags().IntVar(&workspaces, "workspaces", 0, "most workspace objects the project may have (0: the site default)")
	c.AddCommand(limits)
	return c
}

func newTokenCmd(g *globals) *cobra.Command {
	var project, role string
	var ttl time.Duration
	var maxHosts int
	c := &cobra.Command{Use: "token", Aliases: []string{"tokens"}, Short: "Create, list and revoke tokens (admin)"}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print it (shown once)",
		Long: `Create a token and print its secret on standard output (shown once; its
ID and expiry go to standard error).

A join token registers host agents: each host name once, a name that is
registered already never (unless an admin revoked that host), and it
expires: --ttl, 24h by default, at most 720h. User and admin tokens do
not expire unless given a --ttl.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			t, err := cl.CreateTokenWith(cmd.Context(), api.TokensPost{Project: project, Role: role, TTL: model.Duration(ttl), MaxHosts: maxHosts})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s (%s, project %s) expires %s\n", t.ID, t.Role, t.Project, expiresText(t.ExpiresAt))
			return nil
		},
	}
	create.Flags().StringVar(&project, "project", "default", "project")
	create.Flags().StringVar(&role, "role", "user", "user, admin, or join (for registering host agents)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default: 24h for a join token, at most 720h; none for user and admin)")
	create.Flags().IntVar(&maxHosts, "max-hosts", 0, "join tokens: how many hosts it may register (0: any number within its TTL)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens: ID, project, role, node, created, expires (never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			toks, err := cl.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), api.TokenList{Tokens: toks})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID	PROJECT	ROLE	NODE/HOSTS	CREATED	EXPIRES")
			for _, t := range toks {
				id := t.ID
				if t.Current {
					id += " (this)"
				}
				nodes := t.Node
				if t.Role == "join" {
					nodes = strings.Join(t.Hosts, ",")
					if t.MaxHosts > 0 {
						nodes = fmt.Sprintf("%s (%d/%d)", nodes, len(t.Hosts), t.MaxHosts)
					}
				}
				exp := expiresText(t.ExpiresAt)
				if t.Expired {
					exp = "expired " + t.ExpiresAt.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", id, t.Project, t.Role, dash(nodes), t.CreatedAt.Local().Format(time.DateTime), exp)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token by the ID vgrid token list shows: its next request is refused",
		Long: `Revoke a token by its ID (vgrid token list). Its next request is refused
with 401. Revoking a host's node token does not let the host join again
with a join token: vgrid node revoke NAME does.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			t, err := cl.RevokeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			what := t.Role + " token"
			if t.Node != "" {
				what += " of node " + t.Node
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked (%s, project %s)\n", t.ID, what, t.Project)
			return nil
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}

// expiresText says when a token expires: "never" for zero.
func expiresText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format(time.DateTime)
}

func nodeState(n api.NodeInfo) string {
	st := string(n.State)
	if st == "" {
		st = "Ready"
		if !n.Ready {
			st = "NotReady"
		}
	}
	if n.Cordoned {
		st += ",Cordoned"
	}
	return st
}

func certExpiry(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func printNode(w io.Writer, output string, n api.NodeInfo) error {
	if output == "json" {
		return printJSON(w, n)
	}
	fmt.Fprintf(w, "name:          %s\nstate:         %s\naddress:       %s\naccel:         %s (%s, cgroup %s)\n", n.Name, nodeState(n), dash(n.Address), n.Accel, dash(n.Hypervisor), dash(n.Cgroup))
	fmt.Fprintf(w, "capacity:      %.2f CPU, %s memory, %s disk\n", float64(n.Capacity.MilliCPU)/1000, n.Capacity.Memory.Human(), n.Capacity.Disk.Human())
	fmt.Fprintf(w, "allocated:     %.2f CPU, %s memory, %s disk (%d workspaces)\n", float64(n.Allocated.MilliCPU)/1000, n.Allocated.Memory.Human(), n.Allocated.Disk.Human(), n.Workspaces)
	fmt.Fprintf(w, "free:          %.2f CPU, %s memory, %s disk\n", float64(n.Free.MilliCPU)/1000, n.Free.Memory.Human(), n.Free.Disk.Human())
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ls []string
	for _, k := range keys {
		ls = append(ls, k+"="+n.Labels[k])
	}
	fmt.Fprintf(w, "labels:        %s\nagent:         %s\ntransfer:      %s\n", dash(strings.Join(ls, ",")), dash(n.AgentVersion), dash(n.Transfer))
	fmt.Fprintf(w, "guests:        %d running, as its agent last said (%s)\n", len(n.Running), dash(strings.Join(n.Running, ",")))
	fmt.Fprintf(w, "heartbeat:     %s (%s ago)\ncert expires:  %s\n", n.LastHeartbeat.Local().Format(time.DateTime), time.Since(n.LastHeartbeat).Round(time.Second), certExpiry(n.CertificateExpiresAt))
	if !n.LostAt.IsZero() {
		fmt.Fprintf(w, "lost at:       %s\n", n.LostAt.Local().Format(time.DateTime))
	}
	return nil
}
