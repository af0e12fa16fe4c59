package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"vgrid/internal/controlplane"
	"vgrid/internal/leader"
)

// replicaFlags are `vgrid server`'s flags for a control plane of several
// replicas on etcd.
type replicaFlags struct {
	store                     string
	endpoints                 []string
	caFile, certFile, keyFile string
	prefix, name, advertise   string
	electionTTL               time.Duration
	blobDir                   string
}

func (f *replicaFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.store, "store", "bolt", "where the control plane keeps its state: bolt (embedded, in --data-dir; one server) or etcd (several replicas share it: --etcd-endpoints)")
	fs.StringSliceVar(&f.endpoints, "etcd-endpoints", nil, "etcd client URLs, comma-separated (with --store etcd)")
	fs.StringVar(&f.caFile, "etcd-ca", "", "CA certificate that signed the etcd servers' certificates")
	fs.StringVar(&f.certFile, "etcd-cert", "", "client certificate for etcd")
	fs.StringVar(&f.keyFile, "etcd-key", "", "client certificate's key for etcd")
	fs.StringVar(&f.prefix, "etcd-prefix", "/vgrid/", "etcd key prefix of this control plane's state")
	fs.StringVar(&f.name, "replica-name", "", "name of this replica (default: host name and API port)")
	fs.StringVar(&f.advertise, "advertise", "", "API URL other replicas and clients reach this replica at (default: https://<listen address>)")
	fs.DurationVar(&f.electionTTL, "election-ttl", leader.DefaultTTL, "lease of the leader's election: a leader that stops renewing it is replaced after about this long (whole seconds)")
	fs.StringVar(&f.blobDir, "blob-dir", "", "where pushed images are kept (default <data-dir>/blobs; replicas need a shared one)")
}

// etcd returns the etcd configuration, or nil for the embedded store.
func (f *replicaFlags) etcd() (*controlplane.EtcdConfig, error) {
	switch f.store {
	case "bolt", "":
		if len(f.endpoints) > 0 {
			return nil, fmt.Errorf("--etcd-endpoints: given with --store %s; add --store etcd", f.store)
		}
		return nil, nil
	case "etcd":
	default:
		return nil, fmt.Errorf("--store %q: want bolt or etcd", f.store)
	}
	if len(f.endpoints) == 0 {
		return nil, fmt.Errorf("--store etcd: --etcd-endpoints is required (e.g. http://127.0.0.1:2379)")
	}
	for _, e := range f.endpoints {
		if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
			return nil, fmt.Errorf("--etcd-endpoints: %q: want http://host:port or https://host:port", e)
		}
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return nil, fmt.Errorf("--etcd-cert and --etcd-key go together")
	}
	if f.electionTTL < time.Second {
		return nil, fmt.Errorf("--election-ttl %s: at least 1s (etcd leases count whole seconds)", f.electionTTL)
	}
	if !strings.HasPrefix(f.prefix, "/") || !strings.HasSuffix(f.prefix, "/") {
		return nil, fmt.Errorf("--etcd-prefix %q: want a path that starts and ends with /", f.prefix)
	}
	if f.advertise != "" && !strings.HasPrefix(f.advertise, "https://") {
		return nil, fmt.Errorf("--advertise %q: want https://host:port", f.advertise)
	}
	return &controlplane.EtcdConfig{Endpoints: f.endpoints, CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFile,
		Prefix: f.prefix, Name: f.name, Advertise: f.advertise, ElectionTTL: f.electionTTL}, nil
}
