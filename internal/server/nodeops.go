package server

import (
	"net/http"
)

// Host administration: one host's record, cordon, drain.

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) error {
	n, err := s.ctl.NodeInfo(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

func (s *Server) postNodeCordon(w http.ResponseWriter, r *http.Request) error {
	return s.cordon(w, r, true)
}

func (s *Server) postNodeUncordon(w http.ResponseWriter, r *http.Request) error {
	return s.cordon(w, r, false)
}

func (s *Server) cordon(w http.ResponseWriter, r *http.Request, on bool) error {
	if _, err := s.ctl.CordonNode(r.Context(), r.PathValue("node"), on); err != nil {
		return err
	}
	return s.getNode(w, r)
}

func (s *Server) postNodeDrain(w http.ResponseWriter, r *http.Request) error {
	out, err := s.ctl.DrainNode(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
