// Command vgrid is the one binary of vgrid: the all-in-one `up`, the
// control plane (`server`), the host agent (`agent`), the client verbs
// (`workspace`, `node`, `image`, `project`, `token`), and the upkeep of
// the control plane's store (`store`: check, backup, restore).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"vgrid/internal/client"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	var status exitStatus
	if errors.As(err, &status) {
		os.Exit(int(status)) // a command's own exit code (workspace exec)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 500 {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// globals are the flags every client verb shares.
type globals struct {
	config   string
	output   string
	insecure bool // allow a plain http:// server address
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "vgrid",
		Short: "Virtual workspaces: VMs with an enforced resource quantum, deployed by lease",
		Long: `vgrid deploys described environments (an image plus a resource quantum:
vCPUs, CPU cap, memory, disk) as virtual machines on physical hosts, and
enforces the quantum on the host.

Start everything on this machine with 'vgrid up', then create a workspace
with 'vgrid workspace create -f examples/workspace.yaml'.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.config, "config", client.DefaultConfigPath(), "client config (written by vgrid up); VGRID_ADDR and VGRID_TOKEN override it")
	root.PersistentFlags().BoolVar(&g.insecure, "insecure", false, "allow a plain http:// server address that is not this machine's (the token is then sent unencrypted)")
	root.AddCommand(newUpCmd(), newDownCmd(), newServerCmd(), newAgentCmd(),
		newWorkspaceCmd(g), newLeaseCmd(g), newCalendarCmd(g), newUsageCmd(g), newSimCmd(), newNodeCmd(g), newClusterCmd(g), newGridCmd(g), newPlanCmd(g), newDashboardCmd(g), newNetworkCmd(g), newVolumeCmd(g), newImageCmd(g), newProjectCmd(g), newTokenCmd(g),
		newStoreCmd())
	return root
}

// dial returns an API client from the config and the environment.
func (g *globals) dial() (*client.Client, error) {
	cfg, err := client.LoadConfig(g.config)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("no token: run `vgrid up` (it writes %s), or set VGRID_ADDR and VGRID_TOKEN", g.config)
	}
	cfg.Insecure = g.insecure
	return client.New(cfg)
}
