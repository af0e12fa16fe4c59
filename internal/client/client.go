package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

// Error is a non-2xx answer of the API.
type Error struct {
	Status int
	Body   api.ErrorBody
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Body.Message)
	for _, f := range e.Body.Fields {
		if !strings.Contains(e.Body.Message, f.Field+":") {
			fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Reason)
		}
	}
	return b.String()
}

// IsNotFound reports whether err is a 404 of the API.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// Client talks to one control plane, through any of its replicas.
type Client struct {
	// bases are the API base URLs of the replicas; cur indexes the one in
	// use (shared by copies made with WithToken).
	bases []string
	cur   *atomic.Int32
	token string
	hc    *http.Client
	// failWait is Config.FailoverWait (failover.go).
	failWait time.Duration
}

// New returns a client for cfg. cfg.Server may list several replicas'
// addresses, separated by commas: the client moves to the next when one
// does not answer, or has no leader to forward to (failover.go).
func New(cfg Config) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("no server address: run `vgrid up`, or set VGRID_ADDR and VGRID_TOKEN")
	}
	var bases []string
	for _, srv := range strings.Split(cfg.Server, ",") {
		srv = strings.TrimSpace(srv)
		u, err := url.Parse(srv)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("server address %q: want https://host:port (several: separated by commas)", srv)
		}
		if u.Scheme == "http" && !cfg.Insecure && !loopback(u.Hostname()) {
			// Every call carries the bearer token: in the clear, anyone on
			// the path could take it.
			return nil, fmt.Errorf("server address %q: plain http would send the token unencrypted; use https://, or pass --insecure to allow it", srv)
		}
		bases = append(bases, strings.TrimRight(srv, "/")+api.Prefix)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	if cfg.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CACert)) {
			return nil, errors.New("ca_cert: no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	getCert := cfg.GetClientCertificate
	if cfg.ClientCert != "" || cfg.ClientKey != "" {
		if getCert != nil {
			return nil, errors.New("client certificate: give its PEM or GetClientCertificate, not both")
		}
		pair, err := tls.X509KeyPair([]byte(cfg.ClientCert), []byte(cfg.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		getCert = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	if getCert != nil {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.GetClientCertificate = getCert
	}
	if cfg.FailoverWait == 0 {
		cfg.FailoverWait = DefaultFailoverWait
	}
	return &Client{bases: bases, cur: new(atomic.Int32), token: cfg.Token, hc: &http.Client{Transport: tr}, failWait: cfg.FailoverWait}, nil
}

// CloseIdleConnections closes the client's idle connections: the next
// requests connect anew, presenting the client certificate of that
// moment.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// NewCertificateRequest returns a PEM certificate request for key with
// common name node: what a host sends when it registers or renews its
// certificate.
func NewCertificateRequest(key crypto.Signer, node string) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: node}}, key)
	if err != nil {
		return "", fmt.Errorf("certificate request: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// certRefused says whether err is the server refusing the client's
// certificate in the TLS handshake: none where one is required, an
// expired one, or one signed by another CA. The alert reaches the client
// as a "remote error" when it reads the answer.
func certRefused(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	switch op.Err.Error() {
	case "tls: bad certificate", "tls: expired certificate", "tls: unknown certificate authority",
		"tls: certificate required", "tls: revoked certificate", "tls: unsupported certificate", "tls: unknown certificate":
		return true
	}
	return false
}

// loopback says whether host is this machine by name or loopback address:
// plain http to it leaves the machine only through a root user's proxy.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// WithToken returns a copy that authenticates with another token.
func (c *Client) WithToken(tok string) *Client {
	cp := *c
	cp.token = tok
	return &cp
}

// Do sends a request. body may be nil, []byte (sent as is) or a value
// (sent as JSON); out, if not nil, receives the JSON answer.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	return c.do(ctx, method, path, "", body, out)
}

// do is Do with an idempotency key ("" for none): a request that carries
// one may be sent again when its answer was lost.
func (c *Client) do(ctx context.Context, method, path, key string, body, out any) error {
	resp, err := c.send(ctx, method, path, key, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		*b, err = io.ReadAll(resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send performs a request and turns error answers into *Error. A replica
// that cannot be reached, or has no leader to forward to, is left for the
// next one (failover.go).
func (c *Client) send(ctx context.Context, method, path, key string, body any) (*http.Response, error) {
	var raw []byte
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
		ctype = "application/yaml"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		raw = j
		ctype = "application/json"
	}
	var fo failover
	for {
		base := c.base()
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(raw)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return nil, err
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		if key != "" {
			req.Header.Set(api.HeaderIdempotencyKey, key)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			if certRefused(err) {
				// The same as the server answering 401, one layer down.
				return nil, &Error{Status: http.StatusUnauthorized, Body: api.ErrorBody{Code: api.CodeUnauthorized,
					Message: fmt.Sprintf("%s %s: the server refused the client certificate in the TLS handshake (%v)", method, path, err)}}
			}
			if fo.again(ctx, c, base, method, key != "", err) {
				continue
			}
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		if resp.StatusCode >= 300 {
			raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			var e api.Error
			if json.Unmarshal(raw, &e) != nil || e.Error.Message == "" {
				e.Error.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(raw)))
			}
			if e.Error.Code == api.CodeNotLeader && fo.again(ctx, c, base, method, key != "", nil) ||
				e.Error.Code == api.CodeLeaderLost && key != "" && fo.again(ctx, c, base, method, true, nil) {
				continue
			}
			return nil, &Error{Status: resp.StatusCode, Body: e.Error}
		}
		return resp, nil
	}
}

// CreateWorkspace sends a spec (YAML or JSON bytes) with an idempotency
// key of its own: if the answer is lost (the replica that had the request
// died), the create is sent again and answers the workspace it made.
func (c *Client) CreateWorkspace(ctx context.Context, spec []byte) (model.Workspace, error) {
	var w model.Workspace
	return w, c.do(ctx, "POST", "/workspaces", newRequestKey(), spec, &w)
}

// ListWorkspaces lists the caller's project's workspaces, every page.
func (c *Client) ListWorkspaces(ctx context.Context) ([]model.Workspace, error) {
	var out []model.Workspace
	cont := ""
	for {
		l, err := c.ListWorkspacesPage(ctx, 0, cont)
		if err != nil {
			return out, err
		}
		out = append(out, l.Workspaces...)
		if cont = l.Continue; cont == "" {
			return out, nil
		}
	}
}

// ListWorkspacesPage returns one page of at most limit workspaces (0: the
// server's default) after the continue token cont ("" for the first).
func (c *Client) ListWorkspacesPage(ctx context.Context, limit int, cont string) (api.WorkspaceList, error) {
	var l api.WorkspaceList
	return l, c.Do(ctx, "GET", "/workspaces?"+pageQuery(limit, cont), nil, &l)
}

func pageQuery(limit int, cont string) string {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cont != "" {
		q.Set("continue", cont)
	}
	return q.Encode()
}

// GetWorkspace returns one workspace.
func (c *Client) GetWorkspace(ctx context.Context, name string) (model.Workspace, error) {
	var w model.Workspace
	return w, c.Do(ctx, "GET", "/workspaces/"+url.PathEscape(name), nil, &w)
}

// GetWorkspaceRaw returns one workspace as the API's JSON.
func (c *Client) GetWorkspaceRaw(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	return b, c.Do(ctx, "GET", "/workspaces/"+url.PathEscape(name), nil, &b)
}

// StopWorkspace asks for a stop.
func (c *Client) StopWorkspace(ctx context.Context, name string) (model.Workspace, error) {
	var w model.Workspace
	return w, c.Do(ctx, "POST", "/workspaces/"+url.PathEscape(name)+"/stop", nil, &w)
}

// StartWorkspace starts a stopped workspace.
func (c *Client) StartWorkspace(ctx context.Context, name string) (model.Workspace, error) {
	var w model.Workspace
	return w, c.Do(ctx, "POST", "/workspaces/"+url.PathEscape(name)+"/start", nil, &w)
}

// DeleteWorkspace asks for deletion.
func (c *Client) DeleteWorkspace(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/workspaces/"+url.PathEscape(name), nil, nil)
}

// WorkspaceLogs returns the tail of the serial console.
func (c *Client) WorkspaceLogs(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	return b, c.Do(ctx, "GET", "/workspaces/"+url.PathEscape(name)+"/logs", nil, &b)
}

// WorkspaceEvents returns the history.
func (c *Client) WorkspaceEvents(ctx context.Context, name string) ([]model.Event, error) {
	var l api.EventList
	return l.Events, c.Do(ctx, "GET", "/workspaces/"+url.PathEscape(name)+"/events", nil, &l)
}

// Nodes lists the hosts.
func (c *Client) Nodes(ctx context.Context) ([]api.NodeInfo, error) {
	var l api.NodeList
	return l.Nodes, c.Do(ctx, "GET", "/nodes", nil, &l)
}

// Images lists the images.
func (c *Client) Images(ctx context.Context) ([]model.Image, error) {
	var l api.ImageList
	return l.Images, c.Do(ctx, "GET", "/images", nil, &l)
}

// CreateProject creates a project and returns its first user token.
func (c *Client) CreateProject(ctx context.Context, name string) (api.TokenCreated, error) {
	var t api.TokenCreated
	return t, c.Do(ctx, "POST", "/projects", api.ProjectsPost{Name: name}, &t)
}

// CreateToken creates a token.
func (c *Client) CreateToken(ctx context.Context, project, role string) (api.TokenCreated, error) {
	var t api.TokenCreated
	return t, c.Do(ctx, "POST", "/tokens", api.TokensPost{Project: project, Role: role}, &t)
}

// CreateTokenWith creates a token with a TTL or a host bound (see
// api.TokensPost).
func (c *Client) CreateTokenWith(ctx context.Context, req api.TokensPost) (api.TokenCreated, error) {
	var t api.TokenCreated
	return t, c.Do(ctx, "POST", "/tokens", req, &t)
}

// Tokens lists the tokens (admin): IDs, roles, expiries, never secrets.
func (c *Client) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	var l api.TokenList
	return l.Tokens, c.Do(ctx, "GET", "/tokens", nil, &l)
}

// RevokeToken revokes a token by its ID (admin).
func (c *Client) RevokeToken(ctx context.Context, id string) (api.TokenInfo, error) {
	var t api.TokenInfo
	return t, c.Do(ctx, "DELETE", "/tokens/"+url.PathEscape(id), nil, &t)
}

// RevokeNode revokes every node token of a host (admin); the host may then
// join again with a new join token.
func (c *Client) RevokeNode(ctx context.Context, node string) (api.NodeRevoked, error) {
	var out api.NodeRevoked
	return out, c.Do(ctx, "POST", "/nodes/"+url.PathEscape(node)+"/revoke", nil, &out)
}

// Whoami describes the caller's token.
func (c *Client) Whoami(ctx context.Context) (api.Whoami, error) {
	var out api.Whoami
	return out, c.Do(ctx, "GET", "/whoami", nil, &out)
}

// The agent protocol.

// RotateNodeToken trades the caller's node token for a new one; the old
// one keeps working for a grace period.
func (c *Client) RotateNodeToken(ctx context.Context, node string) (api.NodeToken, error) {
	var out api.NodeToken
	return out, c.Do(ctx, "POST", "/nodes/"+url.PathEscape(node)+"/token", nil, &out)
}

// RegisterNode registers a host with a join token; csr is the host's PEM
// certificate request (NewCertificateRequest), which the control plane
// signs into the host's client certificate.
func (c *Client) RegisterNode(ctx context.Context, n model.Node, csr string) (api.NodeRegistered, error) {
	var out api.NodeRegistered
	return out, c.Do(ctx, "POST", "/nodes", api.NodesPost{Node: n, CSR: csr}, &out)
}

// RenewCertificate trades the caller's host certificate for a new one
// signed from csr; the old one keeps being accepted for a grace period.
func (c *Client) RenewCertificate(ctx context.Context, node, csr string) (api.NodeCertificate, error) {
	var out api.NodeCertificate
	return out, c.Do(ctx, "POST", "/nodes/"+url.PathEscape(node)+"/certificate", api.NodeCertificatePost{CSR: csr}, &out)
}

// Heartbeat refreshes a node's record.
func (c *Client) Heartbeat(ctx context.Context, n model.Node) error {
	return c.Do(ctx, "PUT", "/nodes/"+url.PathEscape(n.Name)+"/heartbeat", api.NodesPost{Node: n}, nil)
}

// Assignments returns a node's workspaces; with after > 0 it waits up to
// wait for a change after that revision.
func (c *Client) Assignments(ctx context.Context, node string, after int64, wait time.Duration) (api.Assignments, error) {
	var a api.Assignments
	p := "/nodes/" + url.PathEscape(node) + "/assignments"
	if after > 0 {
		p += "?after=" + strconv.FormatInt(after, 10) + "&wait=" + wait.String()
	}
	return a, c.Do(ctx, "GET", p, nil, &a)
}

func nodeWS(node string, w model.Workspace) string {
	return "/nodes/" + url.PathEscape(node) + "/workspaces/" + url.PathEscape(w.Project) + "/" + url.PathEscape(w.Spec.Name)
}

// Report sends what the agent observed of a workspace.
func (c *Client) Report(ctx context.Context, node string, w model.Workspace, r api.AgentReport) error {
	return c.Do(ctx, "PUT", nodeWS(node, w)+"/status", r, nil)
}

// PutConsole uploads the tail of a workspace's console.
func (c *Client) PutConsole(ctx context.Context, node string, w model.Workspace, tail []byte) error {
	return c.Do(ctx, "PUT", nodeWS(node, w)+"/console?id="+url.QueryEscape(w.ID), tail, nil)
}

// Deleted tells the server a workspace is torn down on the host.
func (c *Client) Deleted(ctx context.Context, node string, w model.Workspace) error {
	return c.Do(ctx, "DELETE", nodeWS(node, w)+"?id="+url.QueryEscape(w.ID), nil, nil)
}

// ImageFile opens one file of an image (disk, kernel or initrd).
func (c *Client) ImageFile(ctx context.Context, image, file string) (io.ReadCloser, int64, error) {
	resp, err := c.send(ctx, "GET", "/images/"+url.PathEscape(image)+"/files/"+file, "", nil)
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// RegisterImage registers an image whose files are on the control plane's host.
func (c *Client) RegisterImage(ctx context.Context, img model.Image) (model.Image, error) {
	var out model.Image
	return out, c.Do(ctx, "POST", "/images", img, &out)
}

// Leases lists the caller's project's leases, every page.
func (c *Client) Leases(ctx context.Context) ([]api.Lease, error) {
	var out []api.Lease
	cont := ""
	for {
		var l api.LeaseList
		if err := c.Do(ctx, "GET", "/leases?"+pageQuery(0, cont), nil, &l); err != nil {
			return out, err
		}
		out = append(out, l.Leases...)
		if cont = l.Continue; cont == "" {
			return out, nil
		}
	}
}

// Usage sums reserved and used resources per project: project "" is the
// caller's own (all projects for an admin with all set); since zero is all
// time.
func (c *Client) Usage(ctx context.Context, project string, all bool, since time.Time) (api.UsageList, error) {
	q := url.Values{}
	if project != "" {
		q.Set("project", project)
	}
	if all {
		q.Set("all", "1")
	}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339))
	}
	var out api.UsageList
	return out, c.Do(ctx, "GET", "/usage?"+q.Encode(), nil, &out)
}

// ExtendLease lengthens a lease by a duration (negative shortens) or moves
// its end to until (when by is 0).
func (c *Client) ExtendLease(ctx context.Context, name string, by time.Duration, until time.Time) (api.Lease, error) {
	var l api.Lease
	return l, c.Do(ctx, "POST", "/leases/"+url.PathEscape(name)+"/extend", api.LeaseExtend{By: model.Duration(by), Until: until}, &l)
}

// GetLease returns a lease by workspace name or lease ID.
func (c *Client) GetLease(ctx context.Context, name string) (api.Lease, error) {
	var l api.Lease
	return l, c.Do(ctx, "GET", "/leases/"+url.PathEscape(name), nil, &l)
}

// CancelLease cancels a lease (its workspace stops or never starts).
func (c *Client) CancelLease(ctx context.Context, name string) (api.Lease, error) {
	var l api.Lease
	return l, c.Do(ctx, "DELETE", "/leases/"+url.PathEscape(name), nil, &l)
}

// Calendar returns the lease calendar over [from, to) as a text Gantt
// chart width cells wide.
func (c *Client) Calendar(ctx context.Context, from, to time.Time, width int) (string, error) {
	q := url.Values{}
	q.Set("from", from.UTC().Format(time.RFC3339))
	q.Set("to", to.UTC().Format(time.RFC3339))
	if width > 0 {
		q.Set("width", strconv.Itoa(width))
	}
	var b []byte
	err := c.Do(ctx, "GET", "/calendar?"+q.Encode(), nil, &b)
	return string(b), err
}

// Token returns the secret the client authenticates with.
func (c *Client) Token() string { return c.token }
