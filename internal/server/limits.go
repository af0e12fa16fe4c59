package server

import (
	"net/http"

	"vgrid/internal/control"
)

// putProjectLimits sets a project's own object limits (0: the site's).
func (s *Server) putProjectLimits(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req control.Limits
	if err := decodeStrict("limits", body, &req); err != nil {
		return err
	}
	l, err := s.ctl.SetProjectLimits(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}
