package server

import (
	"net/http"

	"vgrid/api"
)

// postNetworks creates an overlay network in the caller's project.
func (s *Server) postNetworks(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.NetworksPost
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	n, err := s.ctl.CreateNetwork(r.Context(), who(r.Context()).Project, req, "")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, n)
	return nil
}

func (s *Server) getNetworks(w http.ResponseWriter, r *http.Request) error {
	list, err := s.ctl.Networks(r.Context(), who(r.Context()).Project)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.NetworkList{Networks: list})
	return nil
}

func (s *Server) getNetwork(w http.ResponseWriter, r *http.Request) error {
	n, err := s.ctl.Network(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

func (s *Server) deleteNetwork(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteNetwork(r.Context(), who(r.Context()).Project, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
