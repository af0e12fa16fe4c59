package store

import "errors"

// ErrCompacted says that Watch was asked to start from a revision older
// than the history the backend still keeps. The caller must re-list and
// watch from the revision of its listing.
var ErrCompacted = errors.New("revision compacted")
