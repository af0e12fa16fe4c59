// Package web provides vgrid's web dashboard: its files (HTML, ES
// modules, CSS and the vendored vis-timeline library), embedded in the
// binary and served by Handler at the control plane's root. The
// dashboard is a single page: hosts and objects, the lease calendar as
// an interactive Gantt chart, utilization over time, and grid plans. It
// reads everything from the JSON API under /api/v1 with the user's
// bearer token, and follows GET /api/v1/events to refresh itself; the
// files themselves are public and hold no data.
package web
