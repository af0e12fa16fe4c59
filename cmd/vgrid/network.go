package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"vgrid/api"
	"vgrid/internal/model"
)

func newNetworkCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "network", Aliases: []string{"networks", "net"}, Short: "Private overlay networks of your project"}
	c.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	var req api.NetworksPost
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a network: a private VXLAN segment across hosts, with a subnet of its own",
		Example: "  vgrid network create lab --subnet 10.20.0.0/24\n" +
			"  vgrid network create web --nat   # members reach outside through their host",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			req.Name = args[0]
			n, err := cl.CreateNetwork(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printNetwork(cmd.OutOrStdout(), g.output, n)
		},
	}
	create.Flags().StringVar(&req.Subnet, "subnet", "", "IPv4 private subnet, /16 to /29 (default "+api.DefaultNetworkSubnet+"; networks are isolated, so they may share one)")
	create.Flags().BoolVar(&req.NAT, "nat", false, "give members outbound access through their host")
	c.AddCommand(create)
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the project's networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			list, err := cl.Networks(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), api.NetworkList{Networks: list})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSUBNET\tGATEWAY\tVNI\tNAT\tMEMBERS\tCLUSTER")
			for _, n := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%d\t%s\n", n.Name, n.Subnet, n.Gateway, n.VNI, n.NAT, len(n.Addresses), dash(n.Cluster))
			}
			return tw.Flush()
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "get NAME",
		Short: "Show a network and its members' addresses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			n, err := cl.GetNetwork(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printNetwork(cmd.OutOrStdout(), g.output, n)
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a network that no member uses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			if err := cl.DeleteNetwork(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "network %s deleted\n", args[0])
			return nil
		},
	})
	return c
}

func printNetwork(w io.Writer, output string, n model.Network) error {
	if output == "json" {
		return printJSON(w, n)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", n.Name)
	fmt.Fprintf(tw, "Subnet:\t%s (gateway %s)\n", n.Subnet, n.Gateway)
	fmt.Fprintf(tw, "VNI:\t%d\n", n.VNI)
	fmt.Fprintf(tw, "NAT:\t%v\n", n.NAT)
	if n.Cluster != "" {
		fmt.Fprintf(tw, "Cluster:\t%s\n", n.Cluster)
	}
	fmt.Fprintf(tw, "Created:\t%s\n", n.CreatedAt.Format("2006-01-02 15:04:05 MST"))
	ids := make([]string, 0, len(n.Addresses))
	for id := range n.Addresses {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fmt.Fprintf(tw, "Members:\t%d\n", len(ids))
	for _, id := range ids {
		fmt.Fprintf(tw, "  %s\t%s\n", id, n.Addresses[id])
	}
	return tw.Flush()
}
