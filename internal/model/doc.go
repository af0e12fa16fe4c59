// Package model holds vgrid's domain types: workspaces and their resource
// quanta, hosts, images, events. They are also the JSON wire types of the
// REST API. The package does no I/O and imports only the standard library,
// so that the pure scheduling core can depend on it.
package model
