package api

// The image repository's wire details (the image itself is model.Image).

// HeaderSHA256 carries a SHA-256 digest (64 lower-case hex digits): in a
// push (PUT /images/{name}) the digest the body must have, else nothing
// is kept; in the answer of GET /images/{name}/files/{file} the file's.
const HeaderSHA256 = "X-Vgrid-Sha256"

// Query parameters of PUT /images/{name}: the body is the disk image
// itself, its length in Content-Length (required).
const (
	// ImageParamFormat is the disk's format, raw or qcow2 (required):
	// the control plane refuses a file of another format.
	ImageParamFormat = "format"
	// ImageParamPublic, true or false (default), makes the image seen
	// and used by every project.
	ImageParamPublic = "public"
	// ImageParamTag is a tag of the image; repeat it for several.
	ImageParamTag = "tag"
	// ImageParamLike names an image whose way of booting the new one
	// takes (a direct-boot image's kernel, initrd and command line).
	ImageParamLike = "like"
)
