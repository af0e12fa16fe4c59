package api

import "vgrid/internal/model"

// SaveRequest is the body of POST /workspaces/{name}/save: save the
// workspace's disk as the new image Image of the caller's project, with
// Public and Tags as at a push. The answer (202) is the model.Save
// recorded; the workspace's host carries it out.
type SaveRequest struct {
	Image  string   `json:"image"`
	Public bool     `json:"public,omitempty"`
	Tags   []string `json:"tags,omitempty"`
}

// SaveList is the answer of GET /workspaces/{name}/saves: the saves of
// the workspace, newest first.
type SaveList struct {
	Saves []model.Save `json:"saves"`
}

// SaveReport is what a host's agent says of a save it carries out
// (POST /nodes/{node}/saves/{id}): how far the copy is (Progress), or
// that it failed (Failed, the reason). Exactly one is set. The image
// itself goes up with PUT /nodes/{node}/saves/{id}/image.
type SaveReport struct {
	Progress *model.SaveProgress `json:"progress,omitempty"`
	Failed   string              `json:"failed,omitempty"`
}

// Query parameters of PUT /nodes/{node}/saves/{id}/image, whose body is
// the image file (qcow2, no backing file; Content-Length required):
// its SHA-256 (hex), the driver's consistency and how long the copy took
// (a Go duration).
const (
	SaveParamSHA256      = "sha256"
	SaveParamConsistency = "consistency"
	SaveParamTook        = "took"
)
