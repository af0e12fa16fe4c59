package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"vgrid/api"
	"vgrid/internal/store"
)

// A write request that failed with not_leader is sent again by its
// client to another replica; one that had changed the store first must
// say that it may have been done instead.
func TestAfterChange(t *testing.T) {
	notLeader := fmt.Errorf("read the lease: %w", store.ErrNotLeader)
	other := errors.New("disk full")
	for _, c := range []struct {
		name    string
		err     error
		changed bool
		status  int
		code    string
	}{
		{"nothing written: not_leader, tried again elsewhere", notLeader, false, http.StatusServiceUnavailable, api.CodeNotLeader},
		{"written, then not_leader: leader_lost", notLeader, true, http.StatusBadGateway, api.CodeLeaderLost},
		{"written, then another error: as it is", other, true, http.StatusInternalServerError, api.CodeInternal},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeError(rec, slog.New(slog.NewTextHandler(io.Discard, nil)), afterChange(c.err, c.changed))
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			if rec.Code != c.status || e.Error.Code != c.code {
				t.Fatalf("got %d %s (%s), want %d %s", rec.Code, e.Error.Code, e.Error.Message, c.status, c.code)
			}
		})
	}
}
