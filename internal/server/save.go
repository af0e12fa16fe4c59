package server

import (
	"net/http"
	"time"

	"vgrid/api"
	"vgrid/internal/control"
)

// Saving a workspace's disk as an image (control/save.go): the user's
// request and list, the host's reports and upload.

// postWorkspaceSave records a save of the workspace's disk as a new image
// of the caller's project: 202 with the save; its host carries it out.
func (s *Server) postWorkspaceSave(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.SaveRequest
	if err := decodeStrict("save", body, &req); err != nil {
		return err
	}
	sv, err := s.ctl.CreateSave(r.Context(), who(r.Context()).Project, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, sv)
	return nil
}

// getWorkspaceSaves lists the workspace's saves, newest first.
func (s *Server) getWorkspaceSaves(w http.ResponseWriter, r *http.Request) error {
	saves, err := s.ctl.Saves(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.SaveList{Saves: saves})
	return nil
}

// postNodeSave takes a host's report on a save: progress or failure.
func (s *Server) postNodeSave(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var rep api.SaveReport
	if err := decodeStrict("save report", body, &rep); err != nil {
		return err
	}
	if fe := control.ValidateSaveReport(rep); len(fe) > 0 {
		return badRequest("invalid save report", fe...)
	}
	sv, err := s.ctl.SaveReport(r.Context(), node, r.PathValue("id"), rep)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sv)
	return nil
}

// putNodeSaveImage streams the image file a host made for a save into the
// repository (PushImage) and ends the save: 200 with the done save, or
// the push's refusal (the save is then failed).
func (s *Server) putNodeSaveImage(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	u := control.SaveUpload{Size: r.ContentLength, SHA256: q.Get(api.SaveParamSHA256), Consistency: q.Get(api.SaveParamConsistency)}
	if t := q.Get(api.SaveParamTook); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return badRequest("invalid save upload", api.FieldError{Field: api.SaveParamTook, Reason: "want a duration such as 1.5s, got " + t})
		}
		u.Took = d
	}
	if fe := control.ValidateSaveUpload(u); len(fe) > 0 {
		return badRequest("invalid save upload", fe...)
	}
	sv, err := s.ctl.SaveUpload(r.Context(), node, r.PathValue("id"), u, r.Body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sv)
	return nil
}
