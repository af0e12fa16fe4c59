// Command dashboard measures the web dashboard in Chromium against a
// control plane holding 100 hosts and 2,000 leases: page load to the
// first Gantt render, the Gantt's render time, and frame times while
// the chart is panned 60 times. Figures in docs/benchmarks.md.
//
//	go run ./bench/dashboard [-hosts 100] [-leases 2000] [-pans 60]
package main
