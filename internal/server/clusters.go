package server

import (
	"errors"
	"net/http"

	"vgrid/api"
	"vgrid/internal/spec"
)

// postClusters creates a virtual cluster from a spec (YAML or JSON) in the
// caller's project: all its members or none.
func (s *Server) postClusters(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	cs, err := spec.ParseCluster(body)
	if err != nil {
		var fe *spec.FieldErrors
		if errors.As(err, &fe) {
			return err
		}
		return badRequest(err.Error())
	}
	st, err := s.ctl.CreateCluster(r.Context(), who(r.Context()).Project, cs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, st)
	return nil
}

func (s *Server) getClusters(w http.ResponseWriter, r *http.Request) error {
	list, err := s.ctl.Clusters(r.Context(), who(r.Context()).Project)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ClusterList{Clusters: list})
	return nil
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) error {
	st, err := s.ctl.Cluster(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) error {
	st, err := s.ctl.DeleteCluster(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, st)
	return nil
}

func (s *Server) postClusterStop(w http.ResponseWriter, r *http.Request) error {
	st, err := s.ctl.StopCluster(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, st)
	return nil
}

func (s *Server) postClusterStart(w http.ResponseWriter, r *http.Request) error {
	st, err := s.ctl.StartCluster(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, st)
	return nil
}

// postClusterScale sets role counts: {"counts": {"worker": 8}}.
func (s *Server) postClusterScale(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.ClusterScale
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	if len(req.Counts) == 0 {
		return badRequest("counts: name at least one role and its count, e.g. {\"counts\": {\"worker\": 4}}")
	}
	st, err := s.ctl.ScaleCluster(r.Context(), who(r.Context()).Project, r.PathValue("name"), req.Counts)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// getClusterExport answers the cluster's spec as YAML, ready to create
// elsewhere.
func (s *Server) getClusterExport(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.ctl.ExportCluster(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	b, err := spec.ExportCluster(cs)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}
