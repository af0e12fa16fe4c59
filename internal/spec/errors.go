package spec

import (
	"strconv"
	"strings"
)

// FieldError is one problem with one field of a spec.
type FieldError struct {
	// Field is the path of the field, e.g. "quantum.cpu" or "context.env.HOME".
	Field string `json:"field"`
	// Reason says what is wrong, e.g. "must be at least 64Mi, got 1Mi".
	Reason string `json:"reason"`
}

// Error returns "field: reason".
func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// maxFieldErrors caps how many problems one spec reports, so that a huge
// malformed document does not produce a huge error.
const maxFieldErrors = 50

// FieldErrors is the list of problems found in a spec: decoding problems
// in key order (document order for JSON, alphabetical for YAML), validation
// problems in the order of the spec's fields.
type FieldErrors struct {
	list    []FieldError
	dropped int
}

// Error joins the problems with "; ".
func (e *FieldErrors) Error() string {
	parts := make([]string, 0, len(e.list)+1)
	for _, f := range e.list {
		parts = append(parts, f.Error())
	}
	if e.dropped > 0 {
		parts = append(parts, "and "+strconv.Itoa(e.dropped)+" more problems")
	}
	return strings.Join(parts, "; ")
}

// Fields returns a copy of the problems, for the API to encode as JSON.
func (e *FieldErrors) Fields() []FieldError {
	return append([]FieldError(nil), e.list...)
}

// Len returns the number of problems found, including any not listed.
func (e *FieldErrors) Len() int { return len(e.list) + e.dropped }

func (e *FieldErrors) add(field, reason string) {
	if len(e.list) >= maxFieldErrors {
		e.dropped++
		return
	}
	e.list = append(e.list, FieldError{Field: field, Reason: reason})
}

// orNil returns e as an error, or nil when it holds no problem.
func (e *FieldErrors) orNil() error {
	if e == nil || e.Len() == 0 {
		return nil
	}
	return e
}
