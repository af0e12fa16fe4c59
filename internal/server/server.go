package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
	"vgrid/internal/store"
	"vgrid/internal/web"
)

// Config configures a control plane: the controller's configuration.
type Config = control.Config

// Server is the control plane's HTTP face over a control.Controller.
// Create it with New, serve Handler, and call Run for the calendar's
// actions.
type Server struct {
	ctl   *control.Controller
	store store.Store // tokens and projects
	log   *slog.Logger
	now   func() time.Time
	// limits is the per-token request rate limit (ratelimit.go).
	limits rateLimiter
	// ca signs hosts' client certificates (certs.go); set by SetNodeCA.
	ca caHolder
	// repl is set on one replica of several (replica.go).
	repl *replication
}

// New returns a server over cfg.Store.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctl, err := control.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Server{ctl: ctl, store: cfg.Store, log: cfg.Logger, now: cfg.Now}, nil
}

// Controller is the core the server serves.
func (s *Server) Controller() *control.Controller { return s.ctl }

// endpoint is one API route, declared as data so that the OpenAPI
// document can be checked against the routes.
type endpoint struct {
	method, path string
	roles        []string // nil: any authenticated caller
	handle       func(s *Server, w http.ResponseWriter, r *http.Request) error
}

var anyUser = []string{RoleAdmin, RoleUser}

var endpoints = []endpoint{
	{"GET", "/openapi.json", nil, (*Server).getOpenAPI},
	{"GET", "/whoami", nil, (*Server).getWhoami},
	{"POST", "/workspaces", anyUser, (*Server).postWorkspaces},
	{"GET", "/workspaces", anyUser, (*Server).getWorkspaces},
	{"GET", "/workspaces/{name}", anyUser, (*Server).getWorkspace},
	{"DELETE", "/workspaces/{name}", anyUser, (*Server).deleteWorkspace},
	{"POST", "/workspaces/{name}/stop", anyUser, (*Server).postWorkspaceStop},
	{"POST", "/workspaces/{name}/start", anyUser, (*Server).postWorkspaceStart},
	{"GET", "/workspaces/{name}/logs", anyUser, (*Server).getWorkspaceLogs},
	{"GET", "/workspaces/{name}/events", anyUser, (*Server).getWorkspaceEvents},
	{"POST", "/workspaces/{name}/exec", anyUser, (*Server).postWorkspaceExec},
	{"POST", "/workspaces/{name}/migrate", anyUser, (*Server).postWorkspaceMigrate},
	{"POST", "/workspaces/{name}/resize", anyUser, (*Server).postWorkspaceResize},
	{"POST", "/workspaces/{name}/save", anyUser, (*Server).postWorkspaceSave},
	{"GET", "/workspaces/{name}/saves", anyUser, (*Server).getWorkspaceSaves},
	{"POST", "/clusters", anyUser, (*Server).postClusters},
	{"GET", "/clusters", anyUser, (*Server).getClusters},
	{"GET", "/clusters/{name}", anyUser, (*Server).getCluster},
	{"DELETE", "/clusters/{name}", anyUser, (*Server).deleteCluster},
	{"POST", "/clusters/{name}/stop", anyUser, (*Server).postClusterStop},
	{"POST", "/clusters/{name}/start", anyUser, (*Server).postClusterStart},
	{"POST", "/clusters/{name}/scale", anyUser, (*Server).postClusterScale},
	{"GET", "/clusters/{name}/export", anyUser, (*Server).getClusterExport},
	{"POST", "/plan", anyUser, (*Server).postPlan},
	{"POST", "/grids", anyUser, (*Server).postGrids},
	{"GET", "/grids", anyUser, (*Server).getGrids},
	{"GET", "/grids/{name}", anyUser, (*Server).getGrid},
	{"DELETE", "/grids/{name}", anyUser, (*Server).deleteGrid},
	{"GET", "/grids/{name}/export", anyUser, (*Server).getGridExport},
	{"POST", "/networks", anyUser, (*Server).postNetworks},
	{"GET", "/networks", anyUser, (*Server).getNetworks},
	{"GET", "/networks/{name}", anyUser, (*Server).getNetwork},
	{"DELETE", "/networks/{name}", anyUser, (*Server).deleteNetwork},
	{"POST", "/volumes", anyUser, (*Server).postVolumes},
	{"GET", "/volumes", anyUser, (*Server).getVolumes},
	{"GET", "/volumes/{name}", anyUser, (*Server).getVolume},
	{"DELETE", "/volumes/{name}", anyUser, (*Server).deleteVolume},
	{"POST", "/volumes/{name}/resize", anyUser, (*Server).postVolumeResize},
	{"POST", "/volumes/{name}/snapshot", anyUser, (*Server).postVolumeSnapshot},
	{"GET", "/leases", anyUser, (*Server).getLeases},
	{"GET", "/leases/{name}", anyUser, (*Server).getLease},
	{"DELETE", "/leases/{name}", anyUser, (*Server).deleteLease},
	{"POST", "/leases/{name}/extend", anyUser, (*Server).postLeaseExtend},
	{"GET", "/calendar", anyUser, (*Server).getCalendar},
	{"GET", "/events", anyUser, (*Server).getEvents},
	{"GET", "/usage", anyUser, (*Server).getUsage},
	{"GET", "/images", anyUser, (*Server).getImages},
	{"POST", "/images", []string{RoleAdmin}, (*Server).postImages},
	{"GET", "/images/{name}", anyUser, (*Server).getImage},
	{"PUT", "/images/{name}", anyUser, (*Server).putImage},
	{"DELETE", "/images/{name}", anyUser, (*Server).deleteImage},
	{"GET", "/images/{name}/files/{file}", []string{RoleAdmin, RoleUser, RoleNode}, (*Server).getImageFile},
	{"GET", "/nodes", anyUser, (*Server).getNodes},
	{"POST", "/projects", []string{RoleAdmin}, (*Server).postProjects},
	{"GET", "/projects", []string{RoleAdmin}, (*Server).getProjects},
	{"PUT", "/projects/{name}/limits", []string{RoleAdmin}, (*Server).putProjectLimits},
	{"POST", "/tokens", []string{RoleAdmin}, (*Server).postTokens},
	{"GET", "/tokens", []string{RoleAdmin}, (*Server).getTokens},
	{"DELETE", "/tokens/{id}", []string{RoleAdmin}, (*Server).deleteToken},
	{"POST", "/nodes/{node}/revoke", []string{RoleAdmin}, (*Server).postNodeRevoke},
	{"GET", "/nodes/{node}", anyUser, (*Server).getNode},
	{"DELETE", "/nodes/{node}", []string{RoleAdmin}, (*Server).deleteNode},
	{"POST", "/nodes/{node}/cordon", []string{RoleAdmin}, (*Server).postNodeCordon},
	{"POST", "/nodes/{node}/uncordon", []string{RoleAdmin}, (*Server).postNodeUncordon},
	{"POST", "/nodes/{node}/drain", []string{RoleAdmin}, (*Server).postNodeDrain},
	// The agent protocol.
	{"POST", "/nodes", []string{RoleJoin, RoleAdmin}, (*Server).postNodes},
	{"PUT", "/nodes/{node}/heartbeat", []string{RoleNode}, (*Server).putNodeHeartbeat},
	{"POST", "/nodes/{node}/token", []string{RoleNode}, (*Server).postNodeToken},
	{"POST", "/nodes/{node}/certificate", []string{RoleNode}, (*Server).postNodeCertificate},
	{"GET", "/nodes/{node}/assignments", []string{RoleNode}, (*Server).getNodeAssignments},
	{"PUT", "/nodes/{node}/workspaces/{project}/{name}/status", []string{RoleNode}, (*Server).putNodeWorkspaceStatus},
	{"PUT", "/nodes/{node}/workspaces/{project}/{name}/console", []string{RoleNode}, (*Server).putNodeWorkspaceConsole},
	{"DELETE", "/nodes/{node}/workspaces/{project}/{name}", []string{RoleNode}, (*Server).deleteNodeWorkspace},
	{"POST", "/nodes/{node}/migrations/{project}/{name}", []string{RoleNode}, (*Server).postNodeMigration},
	{"POST", "/nodes/{node}/volumes/{project}/{name}", []string{RoleNode}, (*Server).postNodeVolume},
	{"PUT", "/nodes/{node}/storage", []string{RoleNode}, (*Server).putNodeStorage},
	{"POST", "/nodes/{node}/execs/{id}/claim", []string{RoleNode}, (*Server).postNodeExecClaim},
	{"POST", "/nodes/{node}/execs/{id}/output", []string{RoleNode}, (*Server).postNodeExecOutput},
	{"POST", "/nodes/{node}/execs/{id}/exit", []string{RoleNode}, (*Server).postNodeExecExit},
	{"POST", "/nodes/{node}/saves/{id}", []string{RoleNode}, (*Server).postNodeSave},
	{"PUT", "/nodes/{node}/saves/{id}/image", []string{RoleNode}, (*Server).putNodeSaveImage},
}

// Handler returns the HTTP handler: every route under /api/v1 requires a
// bearer token; /healthz is open so that load balancers can probe it.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	// The dashboard's files are public: every datum it shows comes from
	// the API with the user's token.
	dash := web.Handler()
	for _, p := range web.Patterns {
		mux.Handle(p, dash)
	}
	for _, e := range endpoints {
		e := e
		mux.HandleFunc(e.method+" "+api.Prefix+e.path, func(w http.ResponseWriter, r *http.Request) {
			s.serve(w, r, e)
		})
	}
	mux.HandleFunc(api.Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.authenticate(r); err != nil {
			writeError(w, s.log, err)
			return
		}
		writeError(w, s.log, notFound(fmt.Sprintf("route %s %s", r.Method, r.URL.Path)))
	})
	return s.instrument(mux) // request metrics; GET /metrics (metrics.go)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, e endpoint) {
	defer func() {
		// A bug in a handler must not take the server down or leak a stack
		// trace to the caller.
		if v := recover(); v != nil {
			s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
			writeError(w, s.log, fmt.Errorf("internal error"))
		}
	}()
	if s.forwardFirst(r) {
		// The leader authenticates the request again (a host's client
		// certificate goes with it): forwarded before anything here
		// reads the store, which a replica cut off from etcd cannot.
		s.forward(w, r)
		return
	}
	p, err := s.authenticate(r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	if s.rateLimited(w, p, e) {
		return
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, p)
	r = r.WithContext(ctx)
	if e.roles != nil {
		if err := requireRole(ctx, e.roles...); err != nil {
			writeError(w, s.log, err)
			return
		}
	}
	var wrote func() bool
	if needsLeader(r) {
		ctx, wrote = store.TrackWrites(ctx)
		r = r.WithContext(ctx)
	}
	if err := e.handle(s, w, r); err != nil {
		if s.repl != nil && control.IsNotLeader(err) && !needsLeader(r) && !s.leading() {
			// A read that needs the calendar: the leader answers it.
			s.forward(w, r)
			return
		}
		writeError(w, s.log, afterChange(err, wrote != nil && wrote()))
	}
}

// afterChange is the error a write request answers: not_leader promises
// that nothing was done (the caller sends it again to another replica),
// so a request that changed the store before it failed that way (the
// replica lost its election, or its session with etcd, half way) answers
// leader_lost instead: it may have been done, look before trying again.
func afterChange(err error, changed bool) error {
	if !changed || !control.IsNotLeader(err) {
		return err
	}
	return &httpError{http.StatusBadGateway, api.CodeLeaderLost,
		fmt.Sprintf("this replica lost its leadership while it handled the request, after it had changed the store (%v): the request may have been carried out in part or in whole; look before trying again", err), nil}
}

func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(api.OpenAPI)
	return err
}

func (s *Server) getWhoami(w http.ResponseWriter, r *http.Request) error {
	p := who(r.Context())
	writeJSON(w, http.StatusOK, whoami(p))
	return nil
}

// Bootstrap makes sure a default project and an admin token exist. It
// returns the secret of a token it created, or "" if one already existed
// (its secret is not recoverable: the store keeps hashes only).
func (s *Server) Bootstrap(ctx context.Context, project string) (admin string, err error) {
	if err := s.ctl.EnsureProject(ctx, project); err != nil {
		return "", err
	}
	ts, err := s.listTokens(ctx)
	if err != nil {
		return "", err
	}
	for _, t := range ts {
		if t.Role == RoleAdmin {
			return "", nil
		}
	}
	return s.createToken(ctx, Token{Project: project, Role: RoleAdmin})
}

// CreateToken creates a token (for vgrid up and tests).
func (s *Server) CreateToken(ctx context.Context, project, role string) (string, error) {
	if err := s.ctl.EnsureProject(ctx, project); err != nil {
		return "", err
	}
	return s.createToken(ctx, Token{Project: project, Role: role})
}

// RegisterImage stores an image record (its files stay where they are and
// are served to agents from there).
func (s *Server) RegisterImage(ctx context.Context, img model.Image) error {
	return s.ctl.RegisterImage(ctx, img, false)
}

// Run carries out the calendar's actions at their time until ctx ends.
func (s *Server) Run(ctx context.Context) error { return s.ctl.Run(ctx) }
