// Package transfer moves a workspace's files (a qcow2 disk overlay, a saved
// memory file) from one host agent to another over mutually authenticated
// TLS: checksummed, resumable, with progress. It knows nothing of vgrid's
// control plane; the caller decides which peer may fetch what.
//
// # Source side
//
// A Server is an http.Handler. It serves, under /v1/transfers/{id}/, the
// files that its authorize function returns for the peer host and the
// transfer id:
//
//	GET /v1/transfers/{id}/manifest      {"files":[{"name":…,"size":…,"sha256":…}]}
//	GET /v1/transfers/{id}/files/{name}  the bytes; single Range "bytes=a-b" / "bytes=a-" / "bytes=-n"
//
// The peer host is the Common Name of the client certificate the TLS layer
// verified; a request without a verified chain is refused (401) before
// authorize is called. Run it on a listener from ListenTLS (or an
// http.Server whose TLSConfig comes from ServerTLSConfig), which requires
// and verifies client certificates against the CA:
//
//	l, err := transfer.ListenTLS(":7443", getCert, caPool)
//	srv := &http.Server{Handler: transfer.NewServer(authorize, log), ReadHeaderTimeout: 30 * time.Second}
//	go srv.Serve(l)
//
// The SHA-256 of each file is computed when a manifest is asked for and
// cached by (path, size, mtime), so the manifest of an unchanged file is
// cheap after the first time.
//
// # Destination side
//
// Fetch gets the manifest, then each file into a staging directory as
// name+".part": it resumes from the part's size with a Range request after a
// network failure, retries with exponential backoff, verifies the SHA-256
// (a mismatch deletes the part and starts that file over once, then fails
// with a *ChecksumError), fsyncs, renames the part into place and fsyncs the
// directory. A file already in place with the manifest's size and sum is not
// fetched again; its verified sum is remembered in an extended attribute
// (user.vgrid.transfer.sha256, keyed by size and mtime) where the file
// system allows, so that a second Fetch does not even read it. Runs of zero
// bytes are not written, so sparse files stay sparse. The network is read by
// one goroutine, the file written and hashed by another, through 1 MiB
// buffers; writeback to disk is started every 32 MiB (sync_file_range) so
// that the final fsync has little left to do. HTTP/1.1 only: one stream
// per connection is what bulk transfer wants.
//
// Names are relative slash-separated paths of [A-Za-z0-9._-] elements,
// without "." or ".." elements (ValidName). They are checked on both sides,
// and the destination opens everything through an os.Root on the staging
// directory, so that neither a malicious manifest nor a symbolic link in the
// staging directory can make Fetch write outside it.
//
// The destination verifies the source's certificate against the CA and the
// expected host name (tls.Config.ServerName; ClientTLSConfig builds such a
// configuration).
package transfer
