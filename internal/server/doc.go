// Package server is the control plane's HTTP face: the authenticated REST
// API under /api/v1 (bearer tokens, roles, projects, TLS material), the
// endpoints agents use to learn their assignments and report what they
// observe, and the mapping of internal/control's errors to status codes.
// Handlers decode, call the controller and encode; the rules live in
// internal/control and the lease calendar.
package server
