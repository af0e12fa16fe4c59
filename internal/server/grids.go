package server

import (
	"net/http"

	"vgrid/api"
)

// postPlan evaluates a grid against the live calendar without booking
// anything (api.GridsPost in, api.Plan out). Admins see every project's
// leases in the plan's chart; others see theirs, the rest masked.
func (s *Server) postPlan(w http.ResponseWriter, r *http.Request) error {
	req, err := readGridsPost(r)
	if err != nil {
		return err
	}
	p := who(r.Context())
	plan, err := s.ctl.PlanGrid(r.Context(), p.Project, req, p.Role == RoleAdmin)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, plan)
	return nil
}

func readGridsPost(r *http.Request) (api.GridsPost, error) {
	var req api.GridsPost
	body, err := readBody(r)
	if err != nil {
		return req, err
	}
	if err := decodeStrict("", body, &req); err != nil {
		return req, err
	}
	if req.Spec == "" {
		return req, badRequest("spec: empty: give the grid file", api.FieldError{Field: "spec", Reason: "empty: give the grid file"})
	}
	return req, nil
}

// postGrids creates a grid, everything or nothing (with "plan": exactly
// that plan, or 409 when the calendar changed since).
func (s *Server) postGrids(w http.ResponseWriter, r *http.Request) error {
	req, err := readGridsPost(r)
	if err != nil {
		return err
	}
	g, err := s.ctl.CreateGrid(r.Context(), who(r.Context()).Project, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g)
	return nil
}

func (s *Server) getGrids(w http.ResponseWriter, r *http.Request) error {
	list, err := s.ctl.Grids(r.Context(), who(r.Context()).Project)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.GridList{Grids: list})
	return nil
}

func (s *Server) getGrid(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ctl.Grid(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) deleteGrid(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ctl.DeleteGrid(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, g)
	return nil
}

func (s *Server) getGridExport(w http.ResponseWriter, r *http.Request) error {
	b, err := s.ctl.ExportGrid(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}
