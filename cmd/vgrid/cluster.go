package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

func newClusterCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "cluster",
		Aliases: []string{"clusters"},
		Short:   "Virtual clusters: roles of workspaces on a private network, one lease, all or nothing",
	}
	c.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	c.AddCommand(clusterCreate(g), clusterList(g), clusterGet(g), clusterExport(g), clusterScale(g),
		clusterAction(g, "stop", "Stop every member; the lease ends when the last is down"),
		clusterAction(g, "start", "Start a stopped cluster again, all members, for a new lease"),
		clusterAction(g, "delete", "Delete a cluster: its members, addresses and own network"))
	return c
}

func clusterCreate(g *globals) *cobra.Command {
	var file string
	var sets []string
	var wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "create -f FILE [--set ROLE.FIELD=VALUE]...",
		Short: "Create a cluster from a spec file (YAML or JSON; - for stdin), all members or none",
		Example: "  vgrid cluster create -f examples/cluster.yaml\n" +
			"  vgrid cluster create -f examples/cluster.yaml --set name=big --set worker.count=8 --set worker.quantum.cpu=2",
		Args: cobra.NoArgs,
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
			if len(sets) > 0 {
				// The same file, changed by the sets: parsed and checked
				// here, sent as the spec it makes.
				cs, err := spec.ParseCluster(data)
				if err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				if cs, err = spec.ApplySets(cs, sets); err != nil {
					return err
				}
				if data, err = spec.ExportCluster(cs); err != nil {
					return err
				}
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := cl.CreateCluster(ctx, data)
			if err != nil {
				return err
			}
			if g.output != "json" {
				fmt.Fprintf(os.Stderr, "cluster %s created: %d members, lease %s, network %s\n", st.Spec.Name, len(st.Members), st.Lease, strings.Join(st.Networks, ","))
			}
			if wait && st.State != string(model.StateQueued) && st.State != string(model.StateScheduled) {
				if st, err = waitCluster(ctx, cl, st.Spec.Name, timeout); err != nil {
					return err
				}
			}
			return printCluster(cmd.OutOrStdout(), g.output, st)
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "cluster spec file")
	c.Flags().StringArrayVar(&sets, "set", nil, "change a field of the file: name=big, worker.count=8, worker.quantum.cpu=2 (repeatable)")
	c.Flags().BoolVar(&wait, "wait", true, "wait until every member runs with its roster applied (Ready)")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait")
	return c
}

// waitCluster polls a cluster until it is Ready, showing how many members
// are.
func waitCluster(ctx context.Context, cl *client.Client, name string, timeout time.Duration) (model.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wt := newWaiter(os.Stderr, "waiting for cluster "+name)
	defer wt.done()
	for {
		st, err := cl.GetCluster(ctx, name)
		if err != nil {
			return st, err
		}
		wt.status(fmt.Sprintf("%s: %d of %d members ready (%s)", name, st.Ready, len(st.Members), st.State))
		if st.State == "Ready" {
			return st, nil
		}
		for _, d := range st.Details {
			if d.State == model.StateFailed {
				return st, fmt.Errorf("cluster %s: member %s failed: %s", name, d.Name, d.Reason)
			}
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("gave up waiting for cluster %s after %s (%d of %d members ready)", name, timeout, st.Ready, len(st.Members))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func clusterList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the project's clusters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			list, err := cl.Clusters(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), api.ClusterList{Clusters: list})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tREADY\tROLES\tNETWORKS\tLEASE")
			for _, st := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", st.Spec.Name, st.State, st.Ready, len(st.Members), roles(st.Spec), strings.Join(st.Networks, ","), st.Lease)
			}
			return tw.Flush()
		},
	}
}

func roles(s model.ClusterSpec) string {
	var out []string
	for _, r := range s.Roles {
		out = append(out, r.Name+"="+strconv.Itoa(r.Count))
	}
	return strings.Join(out, ",")
}

func clusterGet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a cluster: each member's role, host, address and state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			st, err := cl.GetCluster(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printCluster(cmd.OutOrStdout(), g.output, st)
		},
	}
}

func printCluster(w io.Writer, output string, st model.ClusterStatus) error {
	if output == "json" {
		return printJSON(w, st)
	}
	fmt.Fprintf(w, "cluster %s: %s, %d of %d members ready; lease %s; networks %s\n",
		st.Spec.Name, st.State, st.Ready, len(st.Members), st.Lease, strings.Join(st.Networks, ","))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tROLE\tHOST\tADDRESS\tSTATE\tCONTEXT\tREASON")
	for _, d := range st.Details {
		ctxt := "-"
		if d.Contextualized {
			ctxt = "applied"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Role, dash(d.Host), dash(strings.Join(d.Addresses, ",")), d.State, ctxt, dash(d.Reason))
	}
	return tw.Flush()
}

func clusterExport(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "export NAME",
		Short: "Print the spec a cluster was created from, ready to create elsewhere",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			b, err := cl.ExportCluster(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

func clusterScale(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "scale NAME ROLE=COUNT...",
		Short:   "Set the member count of roles; new members are admitted all or none and every member's roster is updated",
		Example: "  vgrid cluster scale lab worker=4",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			counts, err := parseCounts(args[1:])
			if err != nil {
				return err
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			st, err := cl.ScaleCluster(cmd.Context(), args[0], counts)
			if err != nil {
				return err
			}
			return printCluster(cmd.OutOrStdout(), g.output, st)
		},
	}
}

// parseCounts reads ROLE=COUNT arguments.
func parseCounts(args []string) (map[string]int, error) {
	out := map[string]int{}
	for _, a := range args {
		role, n, ok := strings.Cut(a, "=")
		c, err := strconv.Atoi(n)
		if !ok || role == "" || err != nil || c < 0 {
			return nil, fmt.Errorf("%q: want ROLE=COUNT, e.g. worker=4", a)
		}
		if _, dup := out[role]; dup {
			return nil, fmt.Errorf("role %s given twice", role)
		}
		out[role] = c
	}
	return out, nil
}

func clusterAction(g *globals, verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			var st model.ClusterStatus
			switch verb {
			case "stop":
				st, err = cl.StopCluster(cmd.Context(), args[0])
			case "start":
				st, err = cl.StartCluster(cmd.Context(), args[0])
			default:
				st, err = cl.DeleteCluster(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			return printCluster(cmd.OutOrStdout(), g.output, st)
		},
	}
}
