package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
)

// File names in an instance directory.
const (
	specFile    = "spec.json"
	stateFile   = "state.json"
	diskFile    = "disk.qcow2"
	seedFile    = "cidata.iso"
	consoleFile = "console.log"
	pidFile     = "qemu.pid"
	logFile     = "qemu.log"
	qmpSock     = "qmp.sock"
	agentSock   = "agent.sock"
	runLink     = "run"         // symlink to the socket directory when it is not Dir
	intentFile  = "intent.json" // a suspend or resume under way (intent.go)
)

// maxSockPath is the longest path a unix socket address holds
// (sizeof(sun_path) is 108, including the terminating NUL).
const maxSockPath = 107

// Paths are the files of one instance. All are absolute.
type Paths struct {
	Dir     string // StateDir/<id>: everything that persists
	Spec    string // the InstanceSpec it was last started with
	State   string // StartedAt, accel, exit reason
	Disk    string // qcow2 overlay on the image's disk
	Seed    string // NoCloud cidata ISO
	Console string // serial console output
	PIDFile string // written by QEMU after it daemonizes
	Log     string // QEMU's stderr, before and (-D) after it daemonizes
	Intent  string // written while a suspend or resume is under way
	// SockDir holds the sockets: Dir, unless Dir's socket paths would not
	// fit in a unix socket address; then a short directory under the run
	// directory named by a hash of Dir (so it is found again after a
	// restart), with Dir/run linking to it.
	SockDir string
	QMP     string
	Agent   string
}

// instancePaths lays out the files of instance dir.
func instancePaths(dir, runDir string) Paths {
	p := Paths{
		Dir:     dir,
		Spec:    filepath.Join(dir, specFile),
		State:   filepath.Join(dir, stateFile),
		Disk:    filepath.Join(dir, diskFile),
		Seed:    filepath.Join(dir, seedFile),
		Console: filepath.Join(dir, consoleFile),
		PIDFile: filepath.Join(dir, pidFile),
		Log:     filepath.Join(dir, logFile),
		Intent:  filepath.Join(dir, intentFile),
		SockDir: dir,
	}
	if len(filepath.Join(dir, agentSock)) > maxSockPath || len(filepath.Join(dir, qmpSock)) > maxSockPath {
		h := sha256.Sum256([]byte(dir))
		p.SockDir = filepath.Join(runDir, hex.EncodeToString(h[:8]))
	}
	p.QMP = filepath.Join(p.SockDir, qmpSock)
	p.Agent = filepath.Join(p.SockDir, agentSock)
	return p
}

// Paths returns the files of instance id on this driver's host (for tools
// and benchmarks that look at or drive an instance's QEMU themselves).
func (d *Driver) Paths(id string) Paths { return d.paths(id) }
