package server

import (
	"strings"
	"testing"

	"vgrid/api"
	"vgrid/internal/control"
)

// FuzzDecodeUserBodies feeds the same bytes to the bodies of POST
// /workspaces/{name}/exec and POST /clusters/{name}/scale: refused with a
// 400 that names the problem, or decoded to a request the controller's
// checks bound, which survives a round trip.
func FuzzDecodeUserBodies(f *testing.F) {
	f.Add([]byte(`{"argv":["/bin/sh","-c","echo hi"],"env":["A=1"],"dir":"/root","stdin":"aGk=","timeout_s":30}`))
	f.Add([]byte(`{"counts":{"worker":4,"head":1}}`))
	f.Add([]byte(`{"argv":[],"timeout_s":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var x api.ExecPost
		if err := decodeStrict("", data, &x); err != nil {
			refusal(t, err)
		} else if len(control.ValidateExec(x)) == 0 {
			if len(x.Argv) == 0 || x.TimeoutS < 0 || x.TimeoutS > 3600 {
				t.Fatalf("exec request %+v accepted", x)
			}
			for _, a := range x.Argv {
				if strings.ContainsRune(a, 0) {
					t.Fatalf("argv with a NUL accepted: %q", a)
				}
			}
			roundTrip(t, "", x)
		}
		var s api.ClusterScale
		if err := decodeStrict("", data, &s); err != nil {
			refusal(t, err)
		} else {
			roundTrip(t, "", s)
		}
	})
}
