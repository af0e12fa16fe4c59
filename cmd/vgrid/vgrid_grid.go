package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"vgrid/api"
	"vgrid/internal/gridplan"
)

// gridFileFlags are the flags that name a grid file and its parameter
// values, shared by vgrid plan and vgrid grid apply.
type gridFileFlags struct {
	file, values string
	sets         []string
}

func (f *gridFileFlags) register(c *cobra.Command) {
	c.Flags().StringVarP(&f.file, "file", "f", "", "grid file (YAML or JSON; - for stdin)")
	c.Flags().StringVar(&f.values, "values", "", "a YAML file of parameter values (name: value)")
	c.Flags().StringArrayVar(&f.sets, "set", nil, "a parameter value NAME=VALUE, over the file's and the values file's (repeatable)")
}

// request reads the files into the body of POST /plan or /grids.
func (f *gridFileFlags) request() (api.GridsPost, error) {
	if f.file == "" {
		return api.GridsPost{}, fmt.Errorf("-f FILE is required")
	}
	var data []byte
	var err error
	if f.file == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(f.file)
	}
	if err != nil {
		return api.GridsPost{}, err
	}
	req := api.GridsPost{Spec: string(data), Set: f.sets}
	if f.values != "" {
		vb, err := os.ReadFile(f.values)
		if err != nil {
			return api.GridsPost{}, err
		}
		var raw map[string]any
		if err := yaml.Unmarshal(vb, &raw); err != nil {
			return api.GridsPost{}, fmt.Errorf("--values %s: %w", f.values, err)
		}
		req.Values = map[string]string{}
		for k, v := range raw {
			switch v.(type) {
			case map[string]any, []any:
				return api.GridsPost{}, fmt.Errorf("--values %s: %s: want a single value (a string, number or boolean), not a list or map", f.values, k)
			}
			req.Values[k] = fmt.Sprint(v)
		}
	}
	return req, nil
}

func newPlanCmd(g *globals) *cobra.Command {
	var f gridFileFlags
	var width int
	c := &cobra.Command{
		Use:   "plan -f FILE [--set NAME=VALUE]... [--values FILE]",
		Short: "Plan a virtual grid against the live calendar without booking anything: when, where, whom it pushes aside, or what is short",
		Long: `Plan evaluates a grid file against the live calendar: the earliest window,
from now (or the grid's dated start) forward, in which the whole grid fits; each
member's host, the networks and volumes, the image staging needed, and which
leases it would suspend, migrate or delay, and by how much. When it never fits,
what is short. Nothing is booked. The plan has an ID tied to the calendar's
revision: 'vgrid grid apply -f FILE --plan ID' carries out exactly that plan,
or refuses when the calendar changed since.`,
		Example: "  vgrid plan -f examples/grid.yaml\n  vgrid plan -f examples/grid.yaml --set workers=8 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			p, err := cl.Plan(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), p)
			}
			fmt.Fprint(cmd.OutOrStdout(), gridplan.Text(p, width))
			if !p.Fits {
				return exitStatus(2) // it never fits: as a refusal
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	c.Flags().IntVar(&width, "width", 100, "the chart's width in cells (0: no chart)")
	return c
}

func newGridCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "grid",
		Aliases: []string{"grids"},
		Short:   "Virtual grids: networks, volumes, clusters and workspaces from one file, all or nothing",
	}
	c.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	c.AddCommand(gridApply(g), gridList(g), gridGet(g), gridDelete(g), gridExport(g))
	return c
}

func gridApply(g *globals) *cobra.Command {
	var f gridFileFlags
	var plan string
	c := &cobra.Command{
		Use:   "apply -f FILE [--set NAME=VALUE]... [--values FILE] [--plan ID]",
		Short: "Create a grid: all its parts, or none; with --plan, exactly that plan or a refusal if the calendar changed",
		Example: "  vgrid grid apply -f examples/grid.yaml --set workers=4\n" +
			"  vgrid plan -f examples/grid.yaml && vgrid grid apply -f examples/grid.yaml --plan plan-...",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			req.Plan = plan
			cl, err := g.dial()
			if err != nil {
				return err
			}
			gr, err := cl.CreateGrid(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.output != "json" {
				fmt.Fprintf(os.Stderr, "grid %s created: %d cluster(s), %d workspace(s), %d network(s), %d volume(s), from %s to %s\n",
					gr.Name, len(gr.Clusters), len(gr.Workspaces), len(gr.Networks), len(gr.Volumes), fmtWhen(gr.Start), fmtWhen(gr.End))
			}
			return printGrid(cmd.OutOrStdout(), g.output, gr)
		},
	}
	f.register(c)
	c.Flags().StringVar(&plan, "plan", "", "carry out this plan (from vgrid plan), or refuse if the calendar changed since")
	return c
}

func gridList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the project's grids",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			list, err := cl.Grids(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), list)
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPARTS\tSTART\tEND\tSTATE")
			for _, gr := range list {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", gr.Name, len(gr.Clusters)+len(gr.Workspaces), fmtWhen(gr.Start), fmtWhen(gr.End), gr.State)
			}
			return tw.Flush()
		},
	}
}

func gridGet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a grid: its parts, window and state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			gr, err := cl.GetGrid(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printGrid(cmd.OutOrStdout(), g.output, gr)
		},
	}
}

func gridDelete(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a grid and everything it made (its volumes and networks once their members are gone)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			gr, err := cl.DeleteGrid(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printGrid(cmd.OutOrStdout(), g.output, gr)
		},
	}
}

func gridExport(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "export NAME",
		Short: "Print a grid's file, parameters at the values it was made with (vgrid grid apply -f makes it again)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			b, err := cl.ExportGrid(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

// fmtWhen is a time for a person (UTC, RFC 3339), "-" when unset.
func fmtWhen(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func printGrid(w io.Writer, output string, gr api.Grid) error {
	if output == "json" {
		return printJSON(w, gr)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", gr.Name)
	fmt.Fprintf(tw, "state:\t%s\n", gr.State)
	fmt.Fprintf(tw, "window:\t%s .. %s\n", fmtWhen(gr.Start), fmtWhen(gr.End))
	if gr.Plan != "" {
		fmt.Fprintf(tw, "plan:\t%s\n", gr.Plan)
	}
	for _, x := range []struct {
		what  string
		names []string
	}{{"clusters", gr.Clusters}, {"workspaces", gr.Workspaces}, {"networks", gr.Networks}, {"volumes", gr.Volumes}} {
		if len(x.names) > 0 {
			fmt.Fprintf(tw, "%s:\t%v\n", x.what, x.names)
		}
	}
	if len(gr.Values) > 0 {
		b, _ := json.Marshal(gr.Values)
		fmt.Fprintf(tw, "values:\t%s\n", b)
	}
	return tw.Flush()
}
