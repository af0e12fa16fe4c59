package model

import "time"

// SaveState is where a save of a workspace's disk as an image stands.
type SaveState string

// Save states: pending (recorded, its host has not begun), running (the
// host copies the disk or uploads it), done (the image is in the
// repository), failed (Error says why; no image was made).
const (
	SavePending SaveState = "pending"
	SaveRunning SaveState = "running"
	SaveDone    SaveState = "done"
	SaveFailed  SaveState = "failed"
)

// Finished reports whether the save has ended, well or not.
func (s SaveState) Finished() bool { return s == SaveDone || s == SaveFailed }

// SaveProgress is how far a save's copy of the disk is: Done bytes of
// the virtual disk's Total.
type SaveProgress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// Save is a request to save a workspace's disk as a standalone image in
// the repository (vgrid workspace save), carried out by the workspace's
// host, and what came of it.
type Save struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	// Workspace is the workspace's name, WorkspaceID the ID of its
	// instance on Node, the host that saves it.
	Workspace   string `json:"workspace"`
	WorkspaceID string `json:"workspace_id"`
	Node        string `json:"node"`
	// Image is the name of the image to make; Public and Tags are given
	// to it.
	Image  string    `json:"image"`
	Public bool      `json:"public,omitempty"`
	Tags   []string  `json:"tags,omitempty"`
	State  SaveState `json:"state"`
	Error  string    `json:"error,omitempty"`
	// Progress is the host's last report of the copy.
	Progress SaveProgress `json:"progress,omitzero"`
	// Bytes is the size of the image file; Digest its content's
	// "sha256:<hex>" once done. Consistency is the driver's word for the
	// copy (stopped, crash-consistent after sync, ...); Took how long the
	// copy took on the host.
	Bytes       int64     `json:"bytes,omitempty"`
	Digest      string    `json:"digest,omitempty"`
	Consistency string    `json:"consistency,omitempty"`
	Took        Duration  `json:"took,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	DoneAt      time.Time `json:"done_at,omitzero"`
}
