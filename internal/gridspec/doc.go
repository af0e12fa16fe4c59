// Package gridspec reads, checks, expands and writes back the virtual
// grid file: networks, volumes, clusters and single workspaces composed in
// one YAML (or JSON) document, model.GridSpec (examples/grid.yaml).
//
// The file has a name, params, a lease and a duration (the grid's window),
// networks and volumes the grid makes, clusters (the cluster spec of
// internal/spec) and workspaces (the workspace spec). Decoding is
// internal/spec's: strict (unknown fields, duplicate keys, wrong types and
// units are errors naming the field path, with hints for typos), and each
// part is checked with the rules of its kind, its errors prefixed with
// its place ("clusters[1].roles[0].count").
//
// # Parameters
//
// A reference ${name} anywhere in the text, comments and quoted strings
// included, is replaced by the parameter's value before the YAML is read,
// as text (so "count: ${workers}" is a number when the value is one, and
// "${memory}" may sit inside a flow object). "$${" writes a literal "${"
// (so a shell's ${VAR} in user_data is written $${VAR}); any other "${"
// that is not a well-formed reference is a syntax error naming its line.
//
//   - Names are 1-63 characters of a-z, 0-9, '_' and '-', starting with
//     a letter. At most 64 parameters.
//   - The file declares its parameters under the top-level params, NAME:
//     VALUE, with their defaults; NAME: ~ (or no value) declares one
//     without a default, which must then be given if it is used. params is
//     read first, from the text alone, and may not itself hold references.
//   - Values override the defaults in this order: a values file (a map of
//     NAME: VALUE), then --set NAME=VALUE pairs, the last of a name
//     winning. A value for a name the file does not declare is an error
//     naming it (typos do not pass silently); so is a reference to an
//     undeclared name, or to one without a value, with its line.
//   - A value is inserted as it is, wherever the reference is (a plain
//     scalar, inside quotes, inside {...} or [...]), so it must not be
//     able to change the document's structure: one line of UTF-8 text of
//     at most 1024 bytes, no control characters or tabs, no leading or
//     trailing space, none of { } [ ] , # " ' \ and backquote, no ": "
//     and no trailing ':', and not starting with one of ! & * | > % @ nor
//     with "- " or "? ". Such text is written in the file itself. The
//     same rule holds for the defaults in params.
//   - The grid after replacement may be at most 1 MiB, as the file.
//
// Parse keeps in GridSpec.Params the values it used (defaults overridden),
// so that Export writes a file that re-applies identically: params with
// those values, every value in place, and literal "${" escaped.
//
// # Checks
//
// Validate checks the grid's name (the rules of a workspace's name),
// params, lease and duration (required when a part has no lease of its
// own), networks (at most 64; names unique; a subnet by the rules of POST
// /networks, internal/ipam) and volumes (at most 64; names unique; sizes
// and I/O caps by the rules of POST /volumes; snapshot_of naming an
// existing volume, not one the grid makes); every cluster (at most 64)
// and workspace (at most 256) by internal/spec's rules, with at most 4096
// workspaces in all; that no two workspaces of the grid (cluster members,
// named <cluster>-<role>-<index>, and single workspaces) share a name; and
// that every volume the parts attach has one writer and no reader, or
// readers only, as the control plane requires. Networks and volumes the
// parts name that the grid does not make are existing ones of the
// project: Refs lists them for the server to check.
//
// # Parts and the grid's window
//
// Parts expands the grid into what the control plane creates. A part
// without a lease of its own is linked: it runs in the grid's window,
// taking the grid's lease (none: the earliest window from now) and
// duration (a duration of its own must then equal the grid's). A part with
// a lease of its own keeps it, and takes the grid's duration if it gives
// none.
package gridspec
