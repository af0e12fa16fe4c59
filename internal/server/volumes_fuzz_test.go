package server

import (
	"testing"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
)

// FuzzDecodeVolumeBodies feeds the same bytes to the user's volume bodies
// (create, resize, snapshot), a storage host's volume report and its
// storage address: each is refused with a 400 that names the problem, or
// decoded to a value that survives a round trip; a report the
// controller's check passes says one coherent thing.
func FuzzDecodeVolumeBodies(f *testing.F) {
	f.Add([]byte(`{"name":"data","size":"10Gi","iops":100,"bps":1048576}`))
	f.Add([]byte(`{"name":"data","size":"10Gi","node":"h1"}`))
	f.Add([]byte(`{"size":"20Gi"}`))
	f.Add([]byte(`{"to":"data-monday"}`))
	f.Add([]byte(`{"id":"v0123456789ab","state":"ready","size":"1Gi","endpoint":{"host":"10.0.0.2","port":10809,"export":"v0123456789ab"}}`))
	f.Add([]byte(`{"id":"v0123456789ab","state":"failed","reason":"disk full"}`))
	f.Add([]byte(`{"id":"v0123456789ab","deleted":true}`))
	f.Add([]byte(`{"address":"10.0.0.2:10809"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c api.VolumesPost
		if err := decodeStrict("", data, &c); err != nil {
			refusal(t, err)
		} else {
			roundTrip(t, "", c)
		}
		var r api.VolumeResize
		if err := decodeStrict("", data, &r); err != nil {
			refusal(t, err)
		} else {
			roundTrip(t, "", r)
		}
		var s api.VolumeSnapshot
		if err := decodeStrict("", data, &s); err != nil {
			refusal(t, err)
		} else {
			roundTrip(t, "", s)
		}
		var sh api.StorageHost
		if err := decodeStrict("storage", data, &sh); err != nil {
			refusal(t, err)
		} else {
			roundTrip(t, "storage", sh)
		}
		var rep api.VolumeReport
		if err := decodeStrict("report", data, &rep); err != nil {
			refusal(t, err)
			return
		}
		if fe := control.ValidateVolumeReport(rep); len(fe) > 0 {
			for _, e := range fe {
				if e.Field == "" || e.Reason == "" {
					t.Fatalf("a field error without field or reason: %+v", fe)
				}
			}
			return
		}
		switch {
		case rep.Deleted && (rep.State != "" || rep.Endpoint != nil):
			t.Fatalf("a deleted report saying more accepted: %+v", rep)
		case rep.State == model.VolumeReady && (rep.Endpoint == nil || rep.Endpoint.Export != rep.ID || rep.Endpoint.Port < 1 || rep.Endpoint.Port > 65535):
			t.Fatalf("a ready report without a good endpoint accepted: %+v", rep)
		case rep.State == model.VolumeFailed && rep.Reason == "":
			t.Fatalf("a failure without reason accepted: %+v", rep)
		case !rep.Deleted && rep.State != model.VolumeReady && rep.State != model.VolumeFailed:
			t.Fatalf("state %q accepted", rep.State)
		case len(rep.Reason) > control.MaxReason || rep.Size < 0:
			t.Fatalf("out of bounds accepted: %+v", rep)
		}
		roundTrip(t, "report", rep)
	})
}
