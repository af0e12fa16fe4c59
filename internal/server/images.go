package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
)

// The image repository: images seen by the caller's project, pushed
// disks (streamed, not through readBody's limit), deletion by the owner.

func (s *Server) getImages(w http.ResponseWriter, r *http.Request) error {
	p := who(r.Context())
	imgs, err := s.ctl.VisibleImages(r.Context(), p.Project, p.Role == RoleAdmin)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ImageList{Images: imgs})
	return nil
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) error {
	p := who(r.Context())
	img, err := s.ctl.Image(r.Context(), p.Project, r.PathValue("name"), p.Role == RoleAdmin)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, img)
	return nil
}

// postImages registers an operator's image whose files are on the
// control plane's disk (admin).
func (s *Server) postImages(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var img model.Image
	if err := decodeStrict("", body, &img); err != nil {
		return err
	}
	if err := s.ctl.RegisterImage(r.Context(), img, true); err != nil {
		return err
	}
	out, err := s.ctl.Image(r.Context(), "", img.Name, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// putImage receives a disk image into the caller's project: the body is
// the file, streamed to the blob directory.
func (s *Server) putImage(w http.ResponseWriter, r *http.Request) error {
	req, err := parsePush(r.PathValue("name"), r.URL.Query(), r.Header, r.ContentLength)
	if err != nil {
		return err
	}
	img, err := s.ctl.PushImage(r.Context(), who(r.Context()).Project, req, r.Body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, img)
	return nil
}

func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) error {
	p := who(r.Context())
	err := s.ctl.DeleteImage(r.Context(), p.Project, r.PathValue("name"), p.Role == RoleAdmin)
	if errors.Is(err, control.ErrNotOwner) {
		return fmt.Errorf("%w: %v", errForbidden, err)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// parsePush reads a push's parameters: the query (format, public, tag),
// the header X-Vgrid-Sha256 and Content-Length (required: -1 is unknown).
// Errors name the parameter; the controller checks the values' ranges.
func parsePush(name string, q url.Values, h http.Header, contentLength int64) (control.ImagePush, error) {
	req := control.ImagePush{Name: name}
	var fe []api.FieldError
	bad := func(field, format string, args ...any) {
		fe = append(fe, api.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := q[k]
		switch k {
		case api.ImageParamFormat:
			if len(v) != 1 {
				bad(k, "give it once, got %d values", len(v))
				continue
			}
			req.Format = v[0]
		case api.ImageParamPublic:
			if len(v) != 1 {
				bad(k, "give it once, got %d values", len(v))
				continue
			}
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				bad(k, "want true or false, got %q", short(v[0]))
				continue
			}
			req.Public = b
		case api.ImageParamTag:
			req.Tags = v
		case api.ImageParamLike:
			if len(v) != 1 {
				bad(k, "give it once, got %d values", len(v))
				continue
			}
			req.Like = v[0]
		default:
			bad(short(k), "unknown parameter (want format, public, tag, like)")
		}
	}
	if _, ok := q[api.ImageParamFormat]; !ok {
		bad(api.ImageParamFormat, "required: raw or qcow2")
	}
	if sums := h.Values(api.HeaderSHA256); len(sums) > 0 {
		if len(sums) > 1 {
			bad(api.HeaderSHA256, "give it once, got %d values", len(sums))
		} else if !isHexDigest(sums[0]) {
			bad(api.HeaderSHA256, "want 64 lower-case hex digits, got %q", short(sums[0]))
		} else {
			req.SHA256 = sums[0]
		}
	}
	if len(fe) > 0 {
		return req, badRequest("invalid image push", fe...)
	}
	if contentLength < 0 {
		return req, &httpError{http.StatusLengthRequired, api.CodeInvalid,
			"Content-Length: required: an image is pushed with its length (not chunked)", nil}
	}
	req.Size = contentLength
	return req, nil
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// short cuts a caller's text for an error message.
func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
