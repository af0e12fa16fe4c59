package main

import (
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"vgrid/internal/control"
	"vgrid/internal/server"
)

// siteLimits are the flags of vgrid up and vgrid server that bound what
// one project or token may take of the control plane.
type siteLimits struct {
	workspaces int
	rate       float64
	burst      int
	// A host silent that long is NotReady, then Lost.
	nodeTimeout, nodeLost time.Duration
}

func (l *siteLimits) register(f *pflag.FlagSet) {
	f.IntVar(&l.workspaces, "max-workspaces", control.DefaultMaxWorkspaces,
		"site default of workspace objects per project (vgrid project limits overrides it per project)")
	f.Float64Var(&l.rate, "rate-limit", server.DefaultRateLimit.PerSecond,
		"requests per second per user or admin token (0: no limit); answers over it are 429 with Retry-After")
	f.IntVar(&l.burst, "rate-burst", server.DefaultRateLimit.Burst, "requests a token may make at once before --rate-limit applies")
	f.DurationVar(&l.nodeTimeout, "node-timeout", control.DefaultNodeTimeout,
		"a host with no heartbeat for that long is NotReady: given no new work (agents heartbeat every 5s)")
	f.DurationVar(&l.nodeLost, "node-lost-after", control.DefaultNodeLostAfter,
		"a host with no heartbeat for that long is Lost: out of the calendar, its leases requeued, restarted elsewhere or failed")
}

func (l *siteLimits) limits() control.Limits { return control.Limits{Workspaces: l.workspaces} }

func (l *siteLimits) rateLimit() server.RateLimit {
	rl := server.DefaultRateLimit
	if l.rate <= 0 {
		return server.RateLimit{Disabled: true}
	}
	rl.PerSecond, rl.Burst = l.rate, max(l.burst, 1)
	return rl
}

// args are the flags again, for a vgrid up started in the background.
func (l *siteLimits) args() []string {
	return []string{"--max-workspaces", strconv.Itoa(l.workspaces),
		"--rate-limit", strconv.FormatFloat(l.rate, 'g', -1, 64), "--rate-burst", strconv.Itoa(l.burst),
		"--node-timeout", l.nodeTimeout.String(), "--node-lost-after", l.nodeLost.String()}
}
