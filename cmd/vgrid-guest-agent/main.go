// Command vgrid-guest-agent is the agent inside a vgrid guest VM. Busybox
// init starts (and respawns) it; see package vgrid/internal/guest/agent.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"

	"vgrid/internal/guest/agent"
)

func main() {
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(agent.Version)
		return
	}
	logger := log.New(os.Stderr, "vgrid-guest-agent: ", 0)
	if err := agent.New(agent.Config{Log: logger}).Run(context.Background()); err != nil {
		logger.Fatal(err)
	}
}
