// Command vgrid-guest-agent is the agent inside a vgrid guest VM. Busybox
// init starts (and respawns) it; see package vgrid/internal/guest/agent.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"vgrid/internal/guest/agent"
	"vgrid/internal/guest/proto"
)

func main() {
	version := flag.Bool("version", false, "print the version and exit")
	growfs := flag.Int64(proto.GrowFSFlag, 0, "grow the root filesystem online to fill its disk once the kernel sees the disk at `bytes` or more; print the sizes as JSON and exit")
	growWait := flag.Duration(proto.GrowFSWaitFlag, 10*time.Second, "how long -"+proto.GrowFSFlag+" waits for the kernel to see the disk's new size")
	flag.Parse()
	if *version {
		fmt.Println(agent.Version)
		return
	}
	logger := log.New(os.Stderr, "vgrid-guest-agent: ", 0)
	if *growfs > 0 {
		// The host grew the root disk (QMP block_resize) and asks for the
		// filesystem to follow. A flag rather than a subcommand: an agent
		// too old to know it refuses the flag (exit 2) instead of starting
		// a second agent.
		res, err := agent.GrowFS("", *growfs, *growWait)
		if err != nil {
			logger.Fatal(err)
		}
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			logger.Fatal(err)
		}
		return
	}
	if flag.Arg(0) == agent.IOBenchCommand {
		// Hidden: a disk benchmark the host runs through exec (bench/storage).
		if err := agent.IOBenchMain(flag.Args()[1:], os.Stdout); err != nil {
			logger.Fatal(err)
		}
		return
	}
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
