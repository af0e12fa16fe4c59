package api

import "time"

// StageRequest asks a host's agent to fetch an image into its cache now,
// in the background, for a lease that starts on the host later (a
// reservation or deadline lease staging ahead of its hold). Workspace is
// the workspace it is for (project/name); Start is when that workspace's
// lease run begins (its guest is ready then; the agent starts it its boot
// time earlier). The image's files are described in Assignments.Images.
type StageRequest struct {
	Image     string    `json:"image"`
	Workspace string    `json:"workspace"`
	Start     time.Time `json:"start"`
}
