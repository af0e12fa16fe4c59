package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"vgrid/api"
	"vgrid/internal/ipam"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// Networks are stored as
//
//	networks/<project>/<name>   model.Network (with its members' addresses)
//	netstate/vnis               ipam.VNIs: the VNI of every network, grid-wide
//
// and a network and the VNI table change in one transaction.
func networkKey(project, name string) string { return "networks/" + project + "/" + name }

const vnisKey = "netstate/vnis"

// vniKey is a network's key in the VNI table.
func vniKey(project, name string) string { return project + "/" + name }

// ValidateNetworksPost checks POST /networks and returns the subnet (the
// default when none is given). It is pure.
func ValidateNetworksPost(p api.NetworksPost) (netip.Prefix, []api.FieldError) {
	var f fieldErrs
	if !NameRE.MatchString(p.Name) || strings.Contains(p.Name, ".") {
		f.add("name", "must be a lower-case name of letters, digits and '-' (at most 63), starting and ending with a letter or digit")
	}
	s := p.Subnet
	if s == "" {
		s = api.DefaultNetworkSubnet
	}
	sub, err := ipam.ParseSubnet(s)
	if err != nil {
		var ie *ipam.Error
		if errors.As(err, &ie) {
			f.add("subnet", "%s", ie.Reason)
		} else {
			f.add("subnet", "%v", err)
		}
	}
	return sub, f
}

// CreateNetwork creates a network of the project with a VNI of its own.
// cluster names the cluster it is made for ("" for a user's network).
func (ctl *Controller) CreateNetwork(ctx context.Context, project string, req api.NetworksPost, cluster string) (model.Network, error) {
	sub, fe := ValidateNetworksPost(req)
	if len(fe) > 0 {
		return model.Network{}, invalid("invalid network", fe...)
	}
	lay, err := ipam.LayoutOf(sub)
	if err != nil {
		return model.Network{}, invalid("invalid network", api.FieldError{Field: "subnet", Reason: err.Error()})
	}
	n := model.Network{Project: project, Name: req.Name, Subnet: sub, Gateway: lay.Gateway, NAT: req.NAT,
		Cluster: cluster, CreatedAt: ctl.now()}
	for attempt := 0; ; attempt++ {
		vnis, vop, err := ctl.loadVNIs(ctx)
		if err != nil {
			return model.Network{}, err
		}
		if n.VNI, err = vnis.Allocate(vniKey(project, req.Name)); err != nil {
			if errors.Is(err, ipam.ErrFull) {
				return model.Network{}, conflict(fmt.Sprintf("network %q: no VNI left on the grid (%d networks)", req.Name, vnis.Len()))
			}
			return model.Network{}, err
		}
		if vop.Value, err = json.Marshal(vnis); err != nil {
			return model.Network{}, err
		}
		b, err := json.Marshal(n)
		if err != nil {
			return model.Network{}, err
		}
		rev, err := ctl.store.Txn(ctx, []store.Op{
			{Key: networkKey(project, req.Name), Value: b, Rev: store.OpMustNotExist},
			vop,
		})
		var ce *store.ConflictError
		switch {
		case errors.As(err, &ce) && ce.Key == networkKey(project, req.Name):
			return model.Network{}, conflict(fmt.Sprintf("network %q exists", req.Name))
		case errors.As(err, &ce) && ce.Key == vnisKey && attempt < 50:
			continue // another network was created or deleted meanwhile
		case err != nil:
			return model.Network{}, err
		}
		n.Revision = rev
		ctl.log.Info("network created", "project", project, "network", n.Name, "subnet", n.Subnet, "vni", n.VNI)
		return n, nil
	}
}

// loadVNIs returns the VNI table and the op that writes it back (with the
// revision it was read at).
func (ctl *Controller) loadVNIs(ctx context.Context) (ipam.VNIs, store.Op, error) {
	kv, err := ctl.store.Get(ctx, vnisKey)
	if errors.Is(err, store.ErrNotFound) {
		v, err := ipam.NewVNIs(ipam.DefaultMinVNI, ipam.DefaultMaxVNI)
		return v, store.Op{Key: vnisKey, Rev: store.OpMustNotExist}, err
	}
	if err != nil {
		return ipam.VNIs{}, store.Op{}, err
	}
	var v ipam.VNIs
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return v, store.Op{}, fmt.Errorf("decode %s: %w", vnisKey, err)
	}
	if v.Assigned == nil {
		v.Assigned = map[string]uint32{}
	}
	return v, store.Op{Key: vnisKey, Rev: kv.Revision}, nil
}

func decodeNetwork(kv store.KV) (model.Network, error) {
	var n model.Network
	if err := json.Unmarshal(kv.Value, &n); err != nil {
		return n, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	n.Revision = kv.Revision
	return n, nil
}

// Network returns a network of the project. Another project's network of
// the same name is not found, like a missing one.
func (ctl *Controller) Network(ctx context.Context, project, name string) (model.Network, error) {
	kv, err := ctl.store.Get(ctx, networkKey(project, name))
	if errors.Is(err, store.ErrNotFound) {
		return model.Network{}, notFound(fmt.Sprintf("network %q", name))
	}
	if err != nil {
		return model.Network{}, err
	}
	return decodeNetwork(kv)
}

// Networks lists the project's networks by name.
func (ctl *Controller) Networks(ctx context.Context, project string) ([]model.Network, error) {
	kvs, err := ctl.store.List(ctx, networkKey(project, ""))
	if err != nil {
		return nil, err
	}
	out := make([]model.Network, 0, len(kvs))
	for _, kv := range kvs {
		n, err := decodeNetwork(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteNetwork deletes a network that no member uses, and frees its VNI.
func (ctl *Controller) DeleteNetwork(ctx context.Context, project, name string) error {
	for attempt := 0; ; attempt++ {
		n, err := ctl.Network(ctx, project, name)
		if err != nil {
			return err
		}
		if len(n.Addresses) > 0 {
			return conflict(fmt.Sprintf("network %q is in use by %d member(s); delete them first", name, len(n.Addresses)))
		}
		ops := []store.Op{{Key: networkKey(project, name), Delete: true, Rev: n.Revision}}
		vnis, vop, err := ctl.loadVNIs(ctx)
		if err != nil {
			return err
		}
		if vnis.Release(vniKey(project, name)) {
			if vop.Value, err = json.Marshal(vnis); err != nil {
				return err
			}
			ops = append(ops, vop)
		}
		_, err = ctl.store.Txn(ctx, ops)
		if errors.Is(err, store.ErrConflict) && attempt < 50 {
			continue
		}
		if errors.Is(err, store.ErrNotFound) {
			return notFound(fmt.Sprintf("network %q", name))
		}
		if err != nil {
			return err
		}
		ctl.log.Info("network deleted", "project", project, "network", name, "vni", n.VNI)
		return nil
	}
}
