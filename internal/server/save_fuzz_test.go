package server

import (
	"testing"

	"vgrid/api"
	"vgrid/internal/control"
)

// FuzzDecodeSaveBodies feeds the same bytes to the user's body of POST
// /workspaces/{name}/save and to an agent's save report: each is refused
// with a 400 that names the problem, or decoded to a value that the
// controller's checks either refuse with field errors or bound, and that
// survives a round trip.
func FuzzDecodeSaveBodies(f *testing.F) {
	f.Add([]byte(`{"image":"my-env"}`))
	f.Add([]byte(`{"image":"e","public":true,"tags":["a","b"]}`))
	f.Add([]byte(`{"image":"","tags":null}`))
	f.Add([]byte(`{"progress":{"done":1,"total":2}}`))
	f.Add([]byte(`{"failed":"no space left on device"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req api.SaveRequest
		if err := decodeStrict("save", data, &req); err != nil {
			refusal(t, err)
		} else {
			roundTrip(t, "save", req)
			if fe := control.ValidateSave(req); len(fe) > 0 {
				for _, e := range fe {
					if e.Field == "" || e.Reason == "" {
						t.Fatalf("a field error without field or reason: %+v", fe)
					}
				}
			} else if !control.NameRE.MatchString(req.Image) || len(req.Tags) > control.MaxImageTags {
				t.Fatalf("save %+v accepted", req)
			}
		}
		var rep api.SaveReport
		if err := decodeStrict("save report", data, &rep); err != nil {
			refusal(t, err)
			return
		}
		if fe := control.ValidateSaveReport(rep); len(fe) > 0 {
			for _, e := range fe {
				if e.Field == "" || e.Reason == "" {
					t.Fatalf("a field error without field or reason: %+v", fe)
				}
			}
			return
		}
		switch p := rep.Progress; {
		case (p == nil) == (rep.Failed == ""):
			t.Fatalf("a report saying not exactly one thing accepted: %+v", rep)
		case p != nil && (p.Done < 0 || p.Done > p.Total):
			t.Fatalf("progress %+v accepted", *p)
		case len(rep.Failed) > control.MaxSaveError:
			t.Fatalf("a reason of %d bytes accepted", len(rep.Failed))
		}
		roundTrip(t, "save report", rep)
	})
}
