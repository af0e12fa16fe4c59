// Package plot draws simulation results as standalone SVG files, by hand,
// with the standard library only:
//
//   - UtilizationSVG: utilization over time (a metrics.Series) as a filled
//     step chart with a time axis, a percentage axis, grid lines and the
//     mean.
//   - GanttSVG: one row per host, one bar per run segment of each VM
//     (metrics.Record.Runs), coloured by lease kind, with a legend. Leases
//     sharing a host at the same time are stacked in thinner lanes inside
//     the host's row, so nothing hides anything else. Rows shrink to a few
//     pixels for large clusters (150 hosts fit in about 800 pixels) and
//     host labels thin out to stay legible.
//
// Time axes pick minutes, hours or days from the span shown and label
// round values.
package plot
