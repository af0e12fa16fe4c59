package server

import (
	"encoding/json"
	"net/http"

	"vgrid/api"
)

// Commands run in guests: the user's request streams the answer; the
// host's agent claims each command, sends its output and its end (see
// control/exec.go for the relay).

// postWorkspaceExec runs a command in the workspace's guest and streams
// its output and its end, one api.ExecLine per line (application/x-ndjson).
// Refusals before the command runs are ordinary error answers.
func (s *Server) postWorkspaceExec(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.ExecPost
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	out := &ndjsonSink{w: w}
	err = s.ctl.Exec(r.Context(), who(r.Context()).Project, r.PathValue("name"), req, out)
	if err != nil && out.begun {
		// The stream has begun: the status is sent, and the user is gone
		// or cannot be written to.
		s.log.Debug("exec: stream ended", "err", err)
		return nil
	}
	return err
}

// ndjsonSink writes a streamed exec answer, flushing each line.
type ndjsonSink struct {
	w     http.ResponseWriter
	begun bool
}

func (n *ndjsonSink) Begin() error {
	n.begun = true
	h := n.w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	n.w.WriteHeader(http.StatusOK)
	return http.NewResponseController(n.w).Flush()
}

func (n *ndjsonSink) Line(l api.ExecLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if _, err := n.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return http.NewResponseController(n.w).Flush()
}

// postNodeExecClaim is the agent taking a command (it runs it only then).
func (s *Server) postNodeExecClaim(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	x, err := s.ctl.ClaimExec(r.Context(), node, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, x)
	return nil
}

// postNodeExecOutput is a piece of a command's output.
func (s *Server) postNodeExecOutput(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var o api.ExecOutput
	if err := decodeStrict("output", body, &o); err != nil {
		return err
	}
	ack, err := s.ctl.ExecOutput(r.Context(), node, r.PathValue("id"), o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ack)
	return nil
}

// postNodeExecExit is how a command ended.
func (s *Server) postNodeExecExit(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var x api.ExecExit
	if err := decodeStrict("exit", body, &x); err != nil {
		return err
	}
	if err := s.ctl.ExecExit(r.Context(), node, r.PathValue("id"), x); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
