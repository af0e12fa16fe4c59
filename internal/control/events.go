package control

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"vgrid/api"
	"vgrid/internal/store"
)

// changeKinds are the store prefixes whose changes GET /events reports,
// with the kind each is reported as. Keys under them are
// <prefix><project>/<name> but for nodes/<name> and images/<name>.
var changeKinds = []struct{ prefix, kind string }{
	{"ws/", "workspaces"},
	{"leases/", "leases"},
	{"clusters/", "clusters"},
	{"networks/", "networks"},
	{"volumes/", "volumes"},
	{"images/", "images"},
	{"nodes/", "nodes"},
	{"grids/", "grids"},
}

// WatchChanges reports every change of the store's objects a caller may
// see, from now on, as one api.Event each: all of them (all), else those
// of project, the hosts, and the images project sees. The channel closes
// when ctx ends, the store closes, or a watch falls too far behind (the
// caller starts again and reads everything anew). A follower replica
// serves it from its own store view.
func (ctl *Controller) WatchChanges(ctx context.Context, project string, all bool) (<-chan api.Event, error) {
	ctx, cancel := context.WithCancel(ctx)
	rev, err := ctl.store.Revision(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan api.Event, 64)
	var wg sync.WaitGroup
	for _, ck := range changeKinds {
		ch, err := ctl.store.Watch(ctx, ck.prefix, rev)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Any one watch ending ends them all: the caller then knows
			// to read everything again rather than miss a kind's changes.
			defer cancel()
			for ev := range ch {
				e, ok := changeEvent(ck.prefix, ck.kind, ev, project, all)
				if !ok {
					continue
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(out)
	}()
	return out, nil
}

// changeEvent is the event a store change makes for a caller, and whether
// the caller may see it.
func changeEvent(prefix, kind string, ev store.Event, project string, all bool) (api.Event, bool) {
	rest := strings.TrimPrefix(ev.KV.Key, prefix)
	e := api.Event{Kind: kind, Name: rest, Revision: ev.KV.Revision}
	if all {
		return e, true
	}
	switch kind {
	case "nodes":
		return e, true
	case "images":
		// Names are global; whose an image is is in its value. A deleted
		// one (no value) is told without its name.
		var img struct {
			Project string `json:"project"`
			Public  bool   `json:"public"`
		}
		if ev.KV.Value == nil || json.Unmarshal(ev.KV.Value, &img) != nil {
			e.Name = ""
			return e, true
		}
		return e, img.Project == "" || img.Public || img.Project == project
	}
	p, name, ok := strings.Cut(rest, "/")
	if !ok || p != project {
		return api.Event{}, false
	}
	e.Name = name
	return e, true
}
