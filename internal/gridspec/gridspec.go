package gridspec

import (
	"maps"
	"slices"

	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// Limits of a grid.
const (
	MaxClusters   = 64
	MaxWorkspaces = 256
	MaxNetworks   = 64
	MaxVolumes    = 64
	// MaxMembers bounds the workspaces of a grid: the clusters' members
	// and the single workspaces together.
	MaxMembers = 4096
	// MaxSize is the largest grid file, before and after its parameters
	// are replaced, in bytes.
	MaxSize = spec.MaxSize
)

// Parse reads a grid file written as YAML or JSON, with parameter values:
// the file's params are the defaults, values (a values file) override
// them, then sets (NAME=VALUE, as --set gives them, the last of a name
// winning). It replaces the ${name} references, decodes strictly, keeps
// the values used in Params, and validates the result without an image
// lookup (see Validate).
//
// Problems with fields and parameters come back as *spec.FieldErrors
// ("clusters[1].roles[0].count", "params.workers", "--set x=1"); syntax
// errors (of YAML, JSON or a reference) as plain errors naming the line.
func Parse(data []byte, values map[string]string, sets []string) (model.GridSpec, error) {
	text, used, err := substitute(data, values, sets)
	if err != nil {
		return model.GridSpec{}, err
	}
	g, err := spec.DecodeGrid(text)
	if err != nil {
		return model.GridSpec{}, err
	}
	g.Params = used
	if err := Validate(g, nil); err != nil {
		return model.GridSpec{}, err
	}
	return g, nil
}

// Part kinds.
const (
	KindCluster   = "cluster"
	KindWorkspace = "workspace"
)

// Part is one cluster or single workspace of a grid as the control plane
// creates it: its spec with the grid's lease and duration filled in where
// it gave none.
type Part struct {
	Name string
	// Kind is KindCluster (Cluster is set) or KindWorkspace (Workspace
	// is set).
	Kind      string
	Cluster   *model.ClusterSpec
	Workspace *model.WorkspaceSpec
	// Linked says that the part has no lease of its own: it runs in the
	// grid's window (the grid's lease and duration), with every other
	// linked part, all or nothing.
	Linked bool
}

// Parts expands the grid into its parts, clusters first, each in the
// file's order. A linked part (no lease of its own) gets a copy of the
// grid's lease (nil: the earliest window from now) and the grid's
// duration; a part with a lease of its own keeps it, and gets the grid's
// duration when it gives none. The specs share nothing with g.
func Parts(g model.GridSpec) []Part {
	out := make([]Part, 0, len(g.Clusters)+len(g.Workspaces))
	for _, c := range g.Clusters {
		c = cloneCluster(c)
		linked := c.Lease == nil
		c.Lease, c.Duration = window(g, c.Lease, c.Duration)
		out = append(out, Part{Name: c.Name, Kind: KindCluster, Cluster: &c, Linked: linked})
	}
	for _, w := range g.Workspaces {
		w = cloneWorkspace(w)
		linked := w.Lease == nil
		w.Lease, w.Duration = window(g, w.Lease, w.Duration)
		out = append(out, Part{Name: w.Name, Kind: KindWorkspace, Workspace: &w, Linked: linked})
	}
	return out
}

// window returns a part's lease and duration, the grid's filled in.
func window(g model.GridSpec, lease *model.LeaseSpec, d model.Duration) (*model.LeaseSpec, model.Duration) {
	if lease == nil {
		lease = cloneLease(g.Lease)
		if g.Duration != 0 {
			d = g.Duration
		}
		return lease, d
	}
	if d == 0 {
		d = g.Duration
	}
	return lease, d
}

// Refs lists the names the grid's parts use that the grid does not make:
// networks the clusters join and volumes the parts attach (or the grid's
// volumes start from, snapshot_of), which must be existing ones of the
// project, for the server to check. Both lists are sorted, without
// repeats.
func Refs(g model.GridSpec) (networks, volumes []string) {
	madeNets := map[string]bool{}
	for _, n := range g.Networks {
		madeNets[n.Name] = true
	}
	madeVols := map[string]bool{}
	for _, v := range g.Volumes {
		madeVols[v.Name] = true
	}
	nets, vols := map[string]bool{}, map[string]bool{}
	for _, c := range g.Clusters {
		for _, n := range c.Networks {
			if n.Name != "" && !madeNets[n.Name] {
				nets[n.Name] = true
			}
		}
		for _, r := range c.Roles {
			for _, m := range r.Volumes {
				if !madeVols[m.Name] {
					vols[m.Name] = true
				}
			}
		}
	}
	for _, w := range g.Workspaces {
		for _, m := range w.Volumes {
			if !madeVols[m.Name] {
				vols[m.Name] = true
			}
		}
	}
	for _, v := range g.Volumes {
		if v.SnapshotOf != "" {
			vols[v.SnapshotOf] = true
		}
	}
	return sortedKeys(nets), sortedKeys(vols)
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}

func cloneLease(l *model.LeaseSpec) *model.LeaseSpec {
	if l == nil {
		return nil
	}
	c := *l
	if l.Preemptible != nil {
		p := *l.Preemptible
		c.Preemptible = &p
	}
	return &c
}

func cloneContext(c *model.Context) *model.Context {
	if c == nil {
		return nil
	}
	out := *c
	out.SSHKeys = slices.Clone(c.SSHKeys)
	out.Env = maps.Clone(c.Env)
	if c.Cluster != nil { // never set in a spec; copied for safety
		cc := *c.Cluster
		out.Cluster = &cc
	}
	return &out
}

func cloneCluster(c model.ClusterSpec) model.ClusterSpec {
	c.Lease = cloneLease(c.Lease)
	c.Context = cloneContext(c.Context)
	c.Networks = slices.Clone(c.Networks)
	c.Roles = slices.Clone(c.Roles)
	for i, r := range c.Roles {
		c.Roles[i].Context = cloneContext(r.Context)
		c.Roles[i].Volumes = slices.Clone(r.Volumes)
		if r.Scratch != nil {
			s := *r.Scratch
			c.Roles[i].Scratch = &s
		}
	}
	return c
}

func cloneWorkspace(w model.WorkspaceSpec) model.WorkspaceSpec {
	w.Lease = cloneLease(w.Lease)
	w.Context = cloneContext(w.Context)
	w.Volumes = slices.Clone(w.Volumes)
	return w
}
