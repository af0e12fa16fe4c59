// Command vgrid-guest-agent is the agent inside a vgrid guest VM. Busybox
// init starts (and respawns) it; see package vgrid/internal/guest/agent.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	if flag.Arg(0) == "roster" {
		// The host pushes a newer cluster roster (JSON on stdin).
		raw, err := io.ReadAll(io.LimitReader(os.Stdin, 4<<20))
		if err != nil {
			logger.Fatal(err)
		}
		rev, err := agent.ApplyRoster("/", raw)
		if err != nil {
			logger.Fatal(err)
		}
		fmt.Printf("roster revision %d applied\n", rev)
		return
	}
	if err := agent.New(agent.Config{Log: logger}).Run(context.Background()); err != nil {
		logger.Fatal(err)
	}
}
