package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"vgrid/api"
	"vgrid/internal/model"
)

// TestCreateIdempotencyKey: POST /workspaces with an Idempotency-Key
// answers 201 with the same workspace when sent again; a key that is not
// printable ASCII or too long is 400 naming the header, and nothing is
// created.
func TestCreateIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, err := e.admin.CreateToken(ctx, "default", RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	post := func(name, key string) (int, model.Workspace, api.Error) {
		t.Helper()
		body := strings.Replace(goodSpec, "name: demo", "name: "+name, 1)
		req, _ := http.NewRequest("POST", e.hs.URL+api.Prefix+"/workspaces", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/yaml")
		if key != "" {
			req.Header.Set(api.HeaderIdempotencyKey, key)
		}
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		var w model.Workspace
		var ae api.Error
		if resp.StatusCode == http.StatusCreated {
			_ = json.Unmarshal(b.Bytes(), &w)
		} else {
			_ = json.Unmarshal(b.Bytes(), &ae)
		}
		return resp.StatusCode, w, ae
	}
	code, first, _ := post("idem", "req-1")
	if code != http.StatusCreated {
		t.Fatalf("first create: %d", code)
	}
	code, again, _ := post("idem", "req-1")
	if code != http.StatusCreated || again.ID != first.ID {
		t.Fatalf("the same create again: %d, id %q, want 201 and %q", code, again.ID, first.ID)
	}
	if code, _, _ := post("idem", "req-2"); code != http.StatusBadRequest {
		t.Errorf("the name again with another key: %d, want 400", code)
	}
	for _, bad := range []string{"has space", strings.Repeat("k", 129)} {
		code, _, ae := post("idem-bad", bad)
		if code != http.StatusBadRequest || len(ae.Error.Fields) != 1 || ae.Error.Fields[0].Field != api.HeaderIdempotencyKey {
			t.Errorf("key %.20q: %d %+v, want 400 naming the header", bad, code, ae.Error)
		}
	}
	if _, err := e.admin.GetWorkspace(ctx, "idem-bad"); err == nil {
		t.Error("a create refused for its key made a workspace")
	}
}
