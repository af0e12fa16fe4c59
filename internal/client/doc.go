// Package client is the Go client of vgrid's REST API, used by the CLI, by
// host agents and by tests. It speaks HTTPS to the control plane, trusting
// the control plane's own CA, and authenticates with a bearer token.
package client
