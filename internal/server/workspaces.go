package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// maxBody bounds request bodies; a spec with 64 KiB of user data fits.
const maxBody = 1 << 20

// readBody reads a request body of at most maxBody bytes. A body declared
// larger is refused (413) before a byte of it is read: with "Expect:
// 100-continue" the client is then never told to send it and gets the
// answer, where reading first and stopping at the limit would leave it
// sending into a connection about to be closed (a reset, not a 413).
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBody {
		return nil, tooLarge(r.ContentLength)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, badRequest("read body: " + err.Error())
	}
	if len(b) > maxBody {
		// A body of unknown length (chunked) found too long while read.
		return nil, tooLarge(-1)
	}
	return b, nil
}

func tooLarge(n int64) error {
	msg := fmt.Sprintf("body: larger than %d bytes", maxBody)
	if n > 0 {
		msg = fmt.Sprintf("body: %d bytes, larger than %d", n, maxBody)
	}
	return &httpError{http.StatusRequestEntityTooLarge, api.CodeInvalid, msg, nil}
}

// pageOf reads ?limit= (default api.DefaultPage, at most api.MaxPage) and
// ?continue= of a list request.
func pageOf(r *http.Request) (control.Page, error) {
	q := r.URL.Query()
	p := control.Page{Limit: api.DefaultPage, After: q.Get("continue")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxPage {
			return p, badRequest(fmt.Sprintf("limit: want 1 to %d", api.MaxPage))
		}
		p.Limit = n
	}
	return p, nil
}

// postWorkspaces creates a workspace from a YAML or JSON spec.
func (s *Server) postWorkspaces(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	sp, err := spec.Parse(body)
	if err != nil {
		// Every parse failure is the caller's input: syntax errors carry a
		// line, field errors a path.
		var fe *spec.FieldErrors
		if errors.As(err, &fe) {
			return err
		}
		return badRequest(err.Error())
	}
	ctx := r.Context()
	if key := r.Header.Get(api.HeaderIdempotencyKey); key != "" {
		if err := control.CheckIdempotencyKey(key); err != nil {
			return badRequest(fmt.Sprintf("%s header: %v", api.HeaderIdempotencyKey, err), api.FieldError{Field: api.HeaderIdempotencyKey, Reason: err.Error()})
		}
		ctx = control.WithIdempotencyKey(ctx, key)
	}
	ws, err := s.ctl.CreateWorkspace(ctx, who(ctx).Project, sp)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, ws)
	return nil
}

// getWorkspaces answers one page of the caller's project's workspaces.
func (s *Server) getWorkspaces(w http.ResponseWriter, r *http.Request) error {
	p, err := pageOf(r)
	if err != nil {
		return err
	}
	list, next, err := s.ctl.Workspaces(r.Context(), who(r.Context()).Project, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.WorkspaceList{Workspaces: list, Continue: next})
	return nil
}

func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.ctl.Workspace(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ws)
	return nil
}

func (s *Server) deleteWorkspace(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.ctl.DeleteWorkspace(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, ws)
	return nil
}

func (s *Server) postWorkspaceStop(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.ctl.StopWorkspace(r.Context(), who(r.Context()).Project, r.PathValue("name"), "stopped by user")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, ws)
	return nil
}

func (s *Server) postWorkspaceStart(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.ctl.StartWorkspace(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, ws)
	return nil
}

func (s *Server) getWorkspaceLogs(w http.ResponseWriter, r *http.Request) error {
	b, err := s.ctl.Logs(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write(b)
	return err
}

func (s *Server) getWorkspaceEvents(w http.ResponseWriter, r *http.Request) error {
	evs, err := s.ctl.Events(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.EventList{Events: evs})
	return nil
}

// postWorkspaceMigrate moves a running workspace live to another host
// ({"to": "host"}, or the calendar's choice), or cancels the migration
// under way ({"cancel": true}).
func (s *Server) postWorkspaceMigrate(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.MigrateRequest
	if len(body) > 0 {
		if err := decodeStrict("migration", body, &req); err != nil {
			return err
		}
	}
	if req.Cancel && req.To != "" {
		return badRequest("invalid migration", api.FieldError{Field: "to", Reason: "give to or cancel, not both"})
	}
	project, name := who(r.Context()).Project, r.PathValue("name")
	var ws model.Workspace
	if req.Cancel {
		ws, err = s.ctl.CancelMigration(r.Context(), project, name)
	} else {
		ws, err = s.ctl.MigrateWorkspace(r.Context(), project, name, req)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, ws)
	return nil
}

// postWorkspaceResize changes a workspace's quantum (only the fields
// given), checked against the calendar's future.
func (s *Server) postWorkspaceResize(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.ResizeRequest
	if err := decodeStrict("resize", body, &req); err != nil {
		return err
	}
	ws, err := s.ctl.ResizeWorkspace(r.Context(), who(r.Context()).Project, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, ws)
	return nil
}
