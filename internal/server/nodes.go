package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/store"
)

// postNodes registers a host. A join token gets a new node token and the
// host's client certificate (its CSR signed) back; the node record is
// created or refreshed.
func (s *Server) postNodes(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.NodesPost
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	p := who(ctx)
	name := req.Node.Name
	if !control.NameRE.MatchString(name) {
		return badRequest("invalid node", api.FieldError{Field: "node.name", Reason: "must be a lower-case host name"})
	}
	// The request is checked before anything is stored or used up.
	csr, err := checkCSR(req.CSR, name)
	if err != nil {
		return err
	}
	if s.ca.get() == nil {
		return errNoCA
	}
	// A join token registers new hosts only: with one, anyone could
	// otherwise take over a host and read its workspaces' context. A
	// restarted agent keeps its node token; an admin may re-register a
	// host, which revokes the node tokens it had; a host an admin revoked
	// may join again with a join token that has not registered its name.
	_, err = s.store.Get(ctx, "nodes/"+name)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// The same join token again, for a registration of it that did not
	// finish: carried on.
	resume := false
	if p.Role == RoleJoin {
		if resume, err = s.joinResumes(ctx, p.hash, name); err != nil {
			return err
		}
	}
	if known && p.Role != RoleAdmin && !resume {
		revoked, err := s.nodeRevoked(ctx, name)
		if err != nil {
			return err
		}
		if !revoked {
			return conflict(fmt.Sprintf("host %q is registered already: its agent keeps its node token in its data directory; if that is lost or expired, an admin runs `vgrid node revoke %s` and the agent joins again with a new join token", name, name))
		}
	}
	if p.Role == RoleJoin && !resume {
		// Each host name once per join token, even after a revocation.
		if err := s.useJoinToken(ctx, p.hash, name); err != nil {
			return err
		}
	}
	if known {
		if _, err := s.revokeNodeTokens(ctx, name); err != nil {
			return err
		}
	}
	n, err := s.ctl.RegisterNode(ctx, req.Node)
	if err != nil {
		if p.Role == RoleJoin && !resume {
			s.unuseJoinToken(ctx, p.hash, name)
		}
		return err
	}
	if err := s.clearNodeRevoked(ctx, name); err != nil {
		return err
	}
	// The host's certificates from before (an admin re-registering it)
	// are replaced.
	cert, err := s.issueNodeCert(ctx, n.Name, n.Address, csr.PublicKey, "")
	if err != nil {
		return err
	}
	tok, t, err := s.issueToken(ctx, Token{Project: p.Project, Role: RoleNode, Node: n.Name})
	if err != nil {
		return err
	}
	if p.Role == RoleJoin {
		s.joinedWith(ctx, p.hash, n.Name)
	}
	s.log.Info("node token issued", "node", n.Name, "token_id", tokenID(hashToken(tok)), "by", p.id(), "by_role", p.Role)
	writeJSON(w, http.StatusCreated, api.NodeRegistered{Node: n, Token: tok, ID: tokenID(hashToken(tok)),
		IssuedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Certificate: cert.Certificate, CertificateExpiresAt: cert.CertificateExpiresAt})
	return nil
}

// nodeOf checks that a node token speaks for the node in the path.
func nodeOf(r *http.Request) (string, error) {
	n := r.PathValue("node")
	if who(r.Context()).Node != n {
		return "", fmt.Errorf("%w: this token belongs to node %q", errForbidden, who(r.Context()).Node)
	}
	return n, nil
}

func (s *Server) putNodeHeartbeat(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.NodesPost
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	if err := s.ctl.Heartbeat(ctx, name, req.Node); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getNodeAssignments returns the workspaces placed on the node. With
// ?after=REV it waits (up to ?wait=, default 30 s) until something under
// ws/ changed after REV, so agents learn of new work at once.
func (s *Server) getNodeAssignments(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name, err := nodeOf(r)
	if err != nil {
		return err
	}
	var after int64
	wait := 30 * time.Second
	if a := r.URL.Query().Get("after"); a != "" {
		if after, err = strconv.ParseInt(a, 10, 64); err != nil {
			return badRequest("after: not a revision")
		}
		if ws := r.URL.Query().Get("wait"); ws != "" {
			if wait, err = time.ParseDuration(ws); err != nil || wait < 0 || wait > 5*time.Minute {
				return badRequest("wait: want a duration up to 5m")
			}
		}
	}
	out, err := s.ctl.Assignments(ctx, name, after, wait)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// putNodeWorkspaceStatus merges an agent's report into the workspace.
func (s *Server) putNodeWorkspaceStatus(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var rep api.AgentReport
	if err := decodeStrict("report", body, &rep); err != nil {
		return err
	}
	ws, err := s.ctl.Report(ctx, node, r.PathValue("project"), r.PathValue("name"), rep)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ws)
	return nil
}

func (s *Server) putNodeWorkspaceConsole(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	id := r.URL.Query().Get("id")
	if reason := control.CheckWorkspaceID(id); reason != "" {
		return badRequest("id: "+reason, api.FieldError{Field: "id", Reason: reason})
	}
	body, err := readConsole(r)
	if err != nil {
		return err
	}
	if err := s.ctl.Console(r.Context(), node, r.PathValue("project"), r.PathValue("name"), id, body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteNodeWorkspace is the agent saying it has torn a workspace down.
func (s *Server) deleteNodeWorkspace(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	id := r.URL.Query().Get("id")
	if reason := control.CheckWorkspaceID(id); reason != "" {
		return badRequest("id: "+reason, api.FieldError{Field: "id", Reason: reason})
	}
	if err := s.ctl.Forgotten(r.Context(), node, r.PathValue("project"), r.PathValue("name"), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getNodes(w http.ResponseWriter, r *http.Request) error {
	nodes, err := s.ctl.Nodes(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.NodeList{Nodes: nodes})
	return nil
}

// getImageFile streams one file of an image to an agent's cache (any
// image), or to a user who pulls it (an image its project sees). A pushed
// image's disk is its blob. Ranges are served (http.ServeContent).
func (s *Server) getImageFile(w http.ResponseWriter, r *http.Request) error {
	if p := who(r.Context()); p.Role == RoleUser {
		if _, err := s.ctl.Image(r.Context(), p.Project, r.PathValue("name"), false); err != nil {
			return err
		}
	}
	f, err := s.ctl.ImageFile(r.Context(), r.PathValue("name"), r.PathValue("file"))
	if err != nil {
		return err
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("image %s: %w", r.PathValue("name"), err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	w.Header().Set(api.HeaderSHA256, f.SHA256)
	http.ServeContent(w, r, "", st.ModTime(), fh)
	return nil
}

func (s *Server) postProjects(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.ProjectsPost
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	if fe := control.ValidateProjectsPost(req); len(fe) > 0 {
		return badRequest("invalid project", fe...)
	}
	ctx := r.Context()
	if _, err := s.store.Get(ctx, "projects/"+req.Name); err == nil {
		return conflict(fmt.Sprintf("project %q exists", req.Name))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	tok, err := s.CreateToken(ctx, req.Name, RoleUser)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.TokenCreated{Project: req.Name, Role: RoleUser, Token: tok})
	return nil
}

func (s *Server) getProjects(w http.ResponseWriter, r *http.Request) error {
	kvs, err := s.store.List(r.Context(), "projects/")
	if err != nil {
		return err
	}
	out := []json.RawMessage{}
	for _, kv := range kvs {
		out = append(out, kv.Value)
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": out})
	return nil
}

func (s *Server) postTokens(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.TokensPost
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	if fe := control.ValidateTokensPost(req); len(fe) > 0 {
		return badRequest("invalid token request", fe...)
	}
	if req.Role == "" {
		req.Role = RoleUser
	}
	if req.Role == RoleNode {
		return badRequest("role: node tokens come from registering a host with a join token")
	}
	if !control.NameRE.MatchString(req.Project) {
		return badRequest("invalid token request", api.FieldError{Field: "project", Reason: "must be a lower-case name"})
	}
	// A join token always expires (DefaultJoinTTL unless given, at most
	// MaxJoinTTL); user and admin tokens expire only if given a TTL.
	ttl := req.TTL.D()
	switch {
	case ttl < 0:
		return badRequest("invalid token request", api.FieldError{Field: "ttl", Reason: "must be positive"})
	case req.Role == RoleJoin && ttl == 0:
		ttl = DefaultJoinTTL
	case req.Role == RoleJoin && ttl > MaxJoinTTL:
		return badRequest("invalid token request", api.FieldError{Field: "ttl", Reason: fmt.Sprintf("a join token lives at most %s", MaxJoinTTL)})
	}
	if req.MaxHosts < 0 || req.MaxHosts > 0 && req.Role != RoleJoin {
		return badRequest("invalid token request", api.FieldError{Field: "max_hosts", Reason: "a positive number, for join tokens only"})
	}
	ctx := r.Context()
	t := Token{Project: req.Project, Role: req.Role, MaxHosts: req.MaxHosts}
	if ttl > 0 {
		t.ExpiresAt = s.now().Add(ttl)
	}
	if err := s.ctl.EnsureProject(ctx, req.Project); err != nil {
		return err
	}
	tok, t, err := s.issueToken(ctx, t)
	if err != nil {
		return err
	}
	id := tokenID(hashToken(tok))
	s.log.Info("token created", "token_id", id, "project", t.Project, "role", t.Role, "expires_at", t.ExpiresAt, "by", who(ctx).id())
	writeJSON(w, http.StatusCreated, api.TokenCreated{Project: req.Project, Role: req.Role, Token: tok, ID: id, ExpiresAt: t.ExpiresAt})
	return nil
}

// postNodeMigration takes an agent's report on a live migration of a
// workspace it sends or takes.
func (s *Server) postNodeMigration(w http.ResponseWriter, r *http.Request) error {
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var rep api.MigrationReport
	if err := decodeStrict("migration report", body, &rep); err != nil {
		return err
	}
	if fe := control.ValidateMigrationReport(rep, time.Now()); len(fe) > 0 {
		return badRequest("invalid migration report", fe...)
	}
	if err := s.ctl.MigrationReport(r.Context(), node, r.PathValue("project"), r.PathValue("name"), rep); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
