package server

import (
	"fmt"
	"net/http"

	"vgrid/api"
	"vgrid/internal/control"
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

// deleteNode forgets a host with no workspaces: its record, its place in
// the calendar, its node tokens and certificates.
func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.PathValue("node")
	// A host already gone may still hold credentials: a delete whose
	// replica was lost after the record went (it answered that it may
	// have been done) is finished by sending it again.
	err := s.ctl.DeleteNode(ctx, name)
	gone := control.IsNotFound(err)
	if err != nil && !gone {
		return err
	}
	n, err := s.revokeNodeTokens(ctx, name)
	if err != nil {
		return err
	}
	certs, err := s.dropNodeCerts(ctx, name)
	if err != nil {
		return err
	}
	if gone && n == 0 && certs == 0 {
		return notFound(fmt.Sprintf("node %q", name))
	}
	s.log.Info("node deleted", "node", name, "tokens", n, "certificates", certs, "by", who(ctx).id())
	writeJSON(w, http.StatusOK, api.NodeRevoked{Node: name, TokensRevoked: n, CertificatesRevoked: certs})
	return nil
}
