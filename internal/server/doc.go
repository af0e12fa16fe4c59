// Package server is vgrid's control plane: the authenticated REST API under
// /api/v1, placement of workspaces on hosts (through the pure sched
// package), the endpoints agents use to learn their assignments and report
// what they observe, and a reconciler that enforces lease durations and
// notices hosts that stop reporting. All state lives in a store.Store.
package server
