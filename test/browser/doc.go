// Package browser holds the dashboard's end-to-end tests: a real control
// plane (internal/controlplane) with host agents on the fake driver, and
// a headless Chromium driven over the DevTools protocol (chromedp) that
// logs in, reads the Gantt chart and the plan page, and watches a lease
// made by the CLI appear without a reload. Screenshots go to
// test/browser/artifacts/ (or $VGRID_ARTIFACTS).
package browser
