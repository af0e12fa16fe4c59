package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
	"vgrid/internal/store/bolt"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     testing.TB
	srv   *Server
	hs    *httptest.Server
	clk   *clock
	admin *client.Client
	node  *client.Client // node token and certificate of node "n1"
	// nodeReg is n1's registration.
	nodeReg api.NodeRegistered
	st      *bolt.Store
	tls     TLSFiles // the CA that signs the hosts' certificates
	caPEM   string
	// keys are the PEM keys of the last certificate requests made (csr),
	// by host name.
	keys map[string]string
}

// serveTLS gives srv a CA for host certificates (made in a new directory)
// and serves h as the control plane does: on TLS, asking for client
// certificates, which are verified at the time of now.
func serveTLS(t testing.TB, srv *Server, h http.Handler, now func() time.Time) (*httptest.Server, TLSFiles, string) {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	// The CA's validity starts at now: it must be valid at the server's
	// clock.
	f, err := ensureTLS(t.TempDir(), []string{"127.0.0.1"}, now())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetNodeCA(f, 0); err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerTLSConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Time = now
	hs := httptest.NewUnstartedServer(h)
	hs.TLS = cfg
	hs.StartTLS()
	ca, err := os.ReadFile(f.CACert)
	if err != nil {
		t.Fatal(err)
	}
	return hs, f, string(ca)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	srv, err := New(Config{Store: st, Now: clk.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hs, files, caPEM := serveTLS(t, srv, srv.Handler(), clk.Now)
	t.Cleanup(func() { hs.Close(); st.Close() })
	ctx := context.Background()
	admin, err := srv.Bootstrap(ctx, "default")
	if err != nil || admin == "" {
		t.Fatalf("bootstrap: %q %v", admin, err)
	}
	cl, err := client.New(client.Config{Server: hs.URL, Token: admin, CACert: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, hs: hs, clk: clk, admin: cl, st: st, tls: files, caPEM: caPEM, keys: map[string]string{}}
	e.addImage("vgrid-guest")
	join, err := cl.CreateToken(ctx, "default", RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := cl.WithToken(join.Token).RegisterNode(ctx, model.Node{Name: "n1", Accel: "tcg",
		Capacity: model.Resources{MilliCPU: 2000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}, e.csr("n1"))
	if err != nil {
		t.Fatalf("register node: %v", err)
	}
	e.node, e.nodeReg = e.asNode(reg), reg
	return e
}

// csr returns a certificate request for host node with a new key, which it
// keeps in e.keys.
func (e *env) csr(node string) string {
	e.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	csr, err := client.NewCertificateRequest(key, node)
	if err != nil {
		e.t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(key)
	e.keys[node] = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	return csr
}

// asNode is a client acting as the host of a registration: its node token
// and its certificate, with the key of the last csr made for it.
func (e *env) asNode(reg api.NodeRegistered) *client.Client {
	e.t.Helper()
	return e.nodeClient(reg.Token, reg.Certificate, e.keys[reg.Node.Name])
}

// httpClient is an HTTP client that trusts the server and presents the
// client certificate of a registration (none if reg is zero).
func (e *env) httpClient(reg api.NodeRegistered) *http.Client {
	e.t.Helper()
	hc := e.hs.Client()
	if reg.Certificate == "" {
		return hc
	}
	pair, err := tls.X509KeyPair([]byte(reg.Certificate), []byte(e.keys[reg.Node.Name]))
	if err != nil {
		e.t.Fatal(err)
	}
	tr := hc.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{pair}
	return &http.Client{Transport: tr}
}

// nodeClient is a client with a node token and a client certificate.
func (e *env) nodeClient(token, certPEM, keyPEM string) *client.Client {
	e.t.Helper()
	cl, err := client.New(client.Config{Server: e.hs.URL, Token: token, CACert: e.caPEM, ClientCert: certPEM, ClientKey: keyPEM})
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

func (e *env) addImage(name string) {
	dir := e.t.TempDir()
	file := func(n string) *model.ImageFile {
		p := filepath.Join(dir, n)
		data := []byte("content of " + n)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			e.t.Fatal(err)
		}
		h := sha256.Sum256(data)
		return &model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))}
	}
	img := model.Image{Name: name, Boot: "direct", Disk: *file("rootfs.img"), DiskFormat: "raw",
		Kernel: file("vmlinux"), Initrd: file("initrd.img"), MinDisk: 256 * model.MiB}
	if err := e.srv.RegisterImage(context.Background(), img); err != nil {
		e.t.Fatal(err)
	}
}

const goodSpec = `
name: demo
image: vgrid-guest
quantum: {vcpus: 2, cpu: 0.5, memory: 512Mi, disk: 1Gi}
duration: 2h
`

func apiErr(t *testing.T, err error) *client.Error {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want an API error", err)
	}
	return ce
}

func TestAuthRequired(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"unknown token", "vgu_nope", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.hs.URL+api.Prefix+"/workspaces", nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := e.hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	// A node token cannot act as a user, nor as another node.
	_, err := e.node.ListWorkspaces(context.Background())
	if ce := apiErr(t, err); ce.Status != http.StatusForbidden {
		t.Fatalf("node token listing workspaces: got %d, want 403", ce.Status)
	}
	_, err = e.node.Assignments(context.Background(), "other", 0, 0)
	if ce := apiErr(t, err); ce.Status != http.StatusForbidden {
		t.Fatalf("node token reading another node: got %d, want 403", ce.Status)
	}
}

func TestBadSpecsAreRefusedAndNothingStored(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec)); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	tests := []struct {
		name, spec, field string
	}{
		{"unknown field", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 256Mi}\nduration: 1h\ncolor: red\n", "color"},
		{"negative memory", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: -256Mi}\nduration: 1h\n", "quantum.memory"},
		{"zero memory", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 0}\nduration: 1h\n", "quantum.memory"},
		{"cpu above vcpus", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, cpu: 2, memory: 256Mi}\nduration: 1h\n", "quantum.cpu"},
		{"unknown image", "name: a\nimage: nope\nquantum: {vcpus: 1, memory: 256Mi}\nduration: 1h\n", "image"},
		{"duration 0", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 256Mi}\nduration: 0s\n", "duration"},
		{"absurd memory", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 99999999Ti}\nduration: 1h\n", "quantum.memory"},
		{"absurd vcpus", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1000000000000, memory: 256Mi}\nduration: 1h\n", "quantum.vcpus"},
		{"wrong type", "name: a\nimage: vgrid-guest\nquantum: {vcpus: two, memory: 256Mi}\nduration: 1h\n", "quantum.vcpus"},
		{"empty name", "name: ''\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 256Mi}\nduration: 1h\n", "name"},
		{"bad characters in name", "name: My_VM!\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 256Mi}\nduration: 1h\n", "name"},
		{"unknown unit", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 256Zi}\nduration: 1h\n", "quantum.memory"},
		{"duplicate name", goodSpec, "name"},
		{"reservation in 2611", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 256Mi}\nduration: 1h\nlease: {kind: reservation, start: \"2611-01-01T00:00:00Z\"}\n", "lease.start"},
		{"malformed yaml", "name: a\n  image: [vgrid-guest\nquantum: {vcpus: 1", ""},
		{"disk below image", "name: a\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 256Mi, disk: 100Mi}\nduration: 1h\n", "quantum.disk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := e.st.Revision(ctx)
			_, err := e.admin.CreateWorkspace(ctx, []byte(tt.spec))
			ce := apiErr(t, err)
			if ce.Status != http.StatusBadRequest || ce.Body.Code != api.CodeInvalid {
				t.Fatalf("got %d %s, want 400 invalid: %v", ce.Status, ce.Body.Code, err)
			}
			if tt.field != "" {
				found := strings.Contains(ce.Body.Message, tt.field)
				for _, f := range ce.Body.Fields {
					found = found || f.Field == tt.field
				}
				if !found {
					t.Fatalf("error does not name field %q: %+v", tt.field, ce.Body)
				}
			}
			after, _ := e.st.Revision(ctx)
			if after != before {
				t.Fatalf("store revision moved from %d to %d: something was stored", before, after)
			}
		})
	}
	list, _ := e.admin.ListWorkspaces(ctx)
	if len(list) != 1 {
		t.Fatalf("got %d workspaces, want only the good one", len(list))
	}
}

func TestProjectIsolation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec)); err != nil {
		t.Fatal(err)
	}
	other, err := e.admin.CreateProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	b := e.admin.WithToken(other.Token)
	list, err := b.ListWorkspaces(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("other project lists %d workspaces (%v), want 0", len(list), err)
	}
	for name, call := range map[string]func() error{
		"get":    func() error { _, err := b.GetWorkspace(ctx, "demo"); return err },
		"stop":   func() error { _, err := b.StopWorkspace(ctx, "demo"); return err },
		"start":  func() error { _, err := b.StartWorkspace(ctx, "demo"); return err },
		"delete": func() error { return b.DeleteWorkspace(ctx, "demo") },
		"logs":   func() error { _, err := b.WorkspaceLogs(ctx, "demo"); return err },
		"events": func() error { _, err := b.WorkspaceEvents(ctx, "demo"); return err },
	} {
		if err := call(); !client.IsNotFound(err) {
			t.Errorf("%s from another project: got %v, want 404", name, err)
		}
	}
	// A user token may not create projects or tokens.
	if _, err := b.CreateProject(ctx, "third"); apiErr(t, err).Status != http.StatusForbidden {
		t.Errorf("user token creating a project: got %v, want 403", err)
	}
	w, err := e.admin.GetWorkspace(ctx, "demo")
	if err != nil || w.Desired != model.DesiredRunning {
		t.Fatalf("demo changed: %+v %v", w, err)
	}
	// The same name is free in the other project.
	if _, err := b.CreateWorkspace(ctx, []byte(goodSpec)); err != nil {
		t.Fatalf("same name in another project: %v", err)
	}
}

func TestCapacityRefusalSaysWhatAndWhen(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	big := strings.Replace(goodSpec, "memory: 512Mi", "memory: 6Gi", 1)
	if _, err := e.admin.CreateWorkspace(ctx, []byte(big)); err != nil {
		t.Fatal(err)
	}
	second := strings.Replace(strings.Replace(goodSpec, "name: demo", "name: second", 1), "memory: 512Mi", "memory: 4Gi", 1)
	_, err := e.admin.CreateWorkspace(ctx, []byte(second))
	ce := apiErr(t, err)
	if ce.Status != http.StatusConflict || ce.Body.Code != api.CodeCapacity {
		t.Fatalf("got %d %s, want 409 insufficient_capacity", ce.Status, ce.Body.Code)
	}
	if len(ce.Body.Shortfalls) != 1 || ce.Body.Shortfalls[0].Resource != "memory" {
		t.Fatalf("shortfalls %+v, want memory", ce.Body.Shortfalls)
	}
	if want := int64(2 * model.GiB); ce.Body.Shortfalls[0].Requested-ce.Body.Shortfalls[0].Free != want {
		t.Fatalf("short by %d, want %d", ce.Body.Shortfalls[0].Requested-ce.Body.Shortfalls[0].Free, want)
	}
	if ce.Body.FreesAt == nil || !ce.Body.FreesAt.Equal(e.clk.Now().Add(2*time.Hour)) {
		t.Fatalf("frees_at %v, want now+2h", ce.Body.FreesAt)
	}
	if !strings.Contains(ce.Body.Message, "default/demo") {
		t.Fatalf("message %q does not name the lease in the way", ce.Body.Message)
	}
}

// report sends an agent report for w.
func (e *env) report(w model.Workspace, r api.AgentReport) model.Workspace {
	e.t.Helper()
	r.ID = w.ID
	if r.Generation == 0 {
		r.Generation = w.Status.Generation
	}
	if err := e.node.Report(context.Background(), "n1", w, r); err != nil {
		e.t.Fatalf("report %s: %v", r.State, err)
	}
	got, err := e.admin.GetWorkspace(context.Background(), w.Spec.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

func TestLifecycleThroughAgentReports(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	if w.Status.State != model.StatePending || w.Status.Node != "n1" {
		t.Fatalf("after create: %s on %q, want Pending on n1", w.Status.State, w.Status.Node)
	}
	as, err := e.node.Assignments(ctx, "n1", 0, 0)
	if err != nil || len(as.Workspaces) != 1 || len(as.Images) != 1 {
		t.Fatalf("assignments: %+v %v", as, err)
	}
	now := e.clk.Now()
	w = e.report(w, api.AgentReport{State: model.StateStarting, PID: 42, StartedAt: now, ProcessStarted: now})
	if w.Status.State != model.StateStarting || !w.Status.ExpiresAt.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("after Starting: %s expires %v", w.Status.State, w.Status.ExpiresAt)
	}
	g := &model.GuestInfo{VCPUs: 2, MemoryMiB: 480, Addresses: []string{"10.0.2.15/24"}}
	w = e.report(w, api.AgentReport{State: model.StateRunning, PID: 42, Guest: g, GuestReady: now})
	if w.Status.State != model.StateRunning || w.Status.Guest.VCPUs != 2 {
		t.Fatalf("after Running: %+v", w.Status)
	}
	w, err = e.admin.StopWorkspace(ctx, "demo")
	if err != nil || w.Status.State != model.StateStopping {
		t.Fatalf("stop: %s %v", w.Status.State, err)
	}
	// A late Running report must not undo the stop.
	w = e.report(w, api.AgentReport{State: model.StateRunning, PID: 42, Guest: g})
	if w.Status.State != model.StateStopping {
		t.Fatalf("late Running report turned %s", w.Status.State)
	}
	w = e.report(w, api.AgentReport{State: model.StateStopped})
	if w.Status.State != model.StateStopped {
		t.Fatalf("after Stopped: %s", w.Status.State)
	}
	w, err = e.admin.StartWorkspace(ctx, "demo")
	if err != nil || w.Status.Generation != 2 || w.Status.State != model.StatePending {
		t.Fatalf("start: gen %d %s %v", w.Status.Generation, w.Status.State, err)
	}
	// A report about generation 1 is dropped.
	w = e.report(w, api.AgentReport{State: model.StateStopped, Generation: 1})
	if w.Status.State != model.StatePending {
		t.Fatalf("stale report changed the state to %s", w.Status.State)
	}
	if err := e.admin.DeleteWorkspace(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.GetWorkspace(ctx, "demo"); err != nil {
		t.Fatalf("workspace gone before its host tore it down: %v", err)
	}
	if err := e.node.Deleted(ctx, "n1", w); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.GetWorkspace(ctx, "demo"); !client.IsNotFound(err) {
		t.Fatalf("after teardown: %v, want 404", err)
	}
	evs, _ := e.st.List(ctx, "events/")
	if len(evs) != 0 {
		t.Fatalf("%d events left behind", len(evs))
	}
}

func TestLeaseEndStopsWorkspace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now()
	e.report(w, api.AgentReport{State: model.StateStarting, PID: 1, StartedAt: now, ProcessStarted: now})
	e.clk.Add(2*time.Hour - time.Second)
	if err := e.srv.ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w, _ = e.admin.GetWorkspace(ctx, "demo"); w.Desired != model.DesiredRunning {
		t.Fatalf("stopped before the lease ended")
	}
	e.clk.Add(time.Second)
	if err := e.srv.ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	w, _ = e.admin.GetWorkspace(ctx, "demo")
	if w.Desired != model.DesiredStopped || w.Status.State != model.StateStopping || !strings.Contains(w.Status.Reason, "lease ended") {
		t.Fatalf("after the lease: desired %s state %s reason %q", w.Desired, w.Status.State, w.Status.Reason)
	}
}

func TestAssignmentsLongPollWakesOnChange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	as, err := e.node.Assignments(ctx, "n1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan api.Assignments, 1)
	go func() {
		a, err := e.node.Assignments(ctx, "n1", as.Revision, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- a
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec)); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-done:
		if len(a.Workspaces) != 1 {
			t.Fatalf("woke with %d workspaces, want 1", len(a.Workspaces))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not wake on a new workspace")
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ep := range endpoints {
		ops, ok := doc.Paths[ep.path]
		if _, has := ops[strings.ToLower(ep.method)]; !ok || !has {
			t.Errorf("route %s %s is not in openapi.json", ep.method, ep.path)
		}
		seen[ep.method+" "+ep.path] = true
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			if !seen[strings.ToUpper(m)+" "+p] {
				t.Errorf("openapi.json has %s %s but no route serves it", strings.ToUpper(m), p)
			}
		}
	}
}
