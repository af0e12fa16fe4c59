package server

import (
	"net/http"

	"vgrid/api"
)

// Network volumes: the user's routes (the caller's project only) and the
// storage hosts' side of the agent protocol.

// postVolumes creates a volume in the caller's project; an admin may name
// its storage host.
func (s *Server) postVolumes(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.VolumesPost
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	p := who(r.Context())
	v, err := s.ctl.CreateVolume(r.Context(), p.Project, req, p.Role == RoleAdmin)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *Server) getVolumes(w http.ResponseWriter, r *http.Request) error {
	list, err := s.ctl.Volumes(r.Context(), who(r.Context()).Project)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.VolumeList{Volumes: list})
	return nil
}

func (s *Server) getVolume(w http.ResponseWriter, r *http.Request) error {
	v, err := s.ctl.Volume(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// deleteVolume asks for a volume's removal (202: its storage host removes
// it, then the record goes).
func (s *Server) deleteVolume(w http.ResponseWriter, r *http.Request) error {
	v, err := s.ctl.DeleteVolume(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, v)
	return nil
}

func (s *Server) postVolumeResize(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.VolumeResize
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	v, err := s.ctl.ResizeVolume(r.Context(), who(r.Context()).Project, r.PathValue("name"), req.Size)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, v)
	return nil
}

func (s *Server) postVolumeSnapshot(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.VolumeSnapshot
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	v, err := s.ctl.SnapshotVolume(r.Context(), who(r.Context()).Project, r.PathValue("name"), req.To)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// postNodeVolume takes a storage host's report on a volume it serves.
func (s *Server) postNodeVolume(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var rep api.VolumeReport
	if err := decodeStrict("report", body, &rep); err != nil {
		return err
	}
	if _, err := s.ctl.VolumeReport(r.Context(), node, r.PathValue("project"), r.PathValue("name"), rep); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// putNodeStorage records where a host's agent serves volumes.
func (s *Server) putNodeStorage(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.StorageHost
	if err := decodeStrict("storage", body, &req); err != nil {
		return err
	}
	if err := s.ctl.SetStorageHost(r.Context(), node, req); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
