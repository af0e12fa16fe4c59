// Package spec reads and checks workspace specs: the YAML or JSON documents
// users submit to ask for a workspace.
//
// Parse is strict: unknown fields, duplicate keys, values of the wrong type
// and trailing data are errors, and every error that concerns a field names
// it by its path (for example "quantum.memory" or "context.ssh_keys[1]").
// Field-level problems are returned as *FieldErrors, which the API can hand
// back to clients as a JSON list of {"field", "reason"} objects.
//
// Validate checks the semantic rules (name form, resource bounds, lease
// length, guest context limits). Parse calls it without an image lookup; the
// server calls it again with one, to check that the image exists.
package spec
