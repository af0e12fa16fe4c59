// Package controlplane starts a whole control plane on one machine: the
// bbolt store in a data directory, TLS material, the HTTPS API
// (internal/server over internal/control), the bootstrap of the default
// project with its admin client config and a join token for local agents,
// and the images found in the data directory. `vgrid up` and `vgrid
// server` only wire it.
package controlplane
