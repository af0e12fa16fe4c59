package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"vgrid/internal/client"
)

// newDashboardCmd prints where the web dashboard is and how to log in.
func newDashboardCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "dashboard",
		Short: "Print the web dashboard's address and the token to log in with",
		Long: `The control plane serves a web dashboard at / (hosts, workspaces, clusters,
networks, volumes, images, grids; the calendar as an interactive Gantt chart,
utilization, a plan page; live updates). It logs in with an API token: the
same project rules as the API. This prints the address and the token of this
client's config (written by vgrid up).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := client.LoadConfig(g.config)
			if err != nil {
				return err
			}
			if cfg.Token == "" {
				return fmt.Errorf("no token in %s: run vgrid up, or make a token with vgrid token create", g.config)
			}
			addr := strings.Split(cfg.Server, ",")[0]
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Dashboard:  %s/\n", strings.TrimRight(addr, "/"))
			fmt.Fprintf(out, "Log in with the token (project %s): %s\n", cfg.Project, cfg.Token)
			if strings.HasPrefix(addr, "https://") {
				fmt.Fprintf(out, "The server's certificate is signed by vgrid's own CA (<data dir>/tls/ca.crt, also in %s):\n"+
					"trust it in the browser, or accept the browser's warning for this address.\n", g.config)
			}
			return nil
		},
	}
}
