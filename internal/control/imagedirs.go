package control

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// imageRoots returns the configured image directories as absolute paths
// with their symbolic links resolved; a directory that does not exist is
// left out.
func (ctl *Controller) imageRoots() []string {
	var out []string
	for _, d := range ctl.cfg.ImageDirs {
		if r := resolvedDir(d); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// fileDirRoot is the directory of p, resolved, as the only root (nil if
// it cannot be resolved).
func fileDirRoot(p string) []string {
	if !filepath.IsAbs(p) {
		return nil
	}
	if r := resolvedDir(filepath.Dir(p)); r != "" {
		return []string{r}
	}
	return nil
}

func resolvedDir(d string) string {
	abs, err := filepath.Abs(d)
	if err != nil {
		return ""
	}
	r, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return ""
	}
	return r
}

// resolveImageFile follows p's symbolic links and checks that it ends at a
// regular file inside one of roots (resolved directories). It returns the
// resolved path and the file's information; the error says what is wrong
// for the admin who registers the image.
func resolveImageFile(p string, roots []string) (string, os.FileInfo, error) {
	if reason := checkAbsPath(p); reason != "" {
		return "", nil, fmt.Errorf("%s", reason)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", nil, fmt.Errorf("not readable on the control plane: %v", err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", nil, fmt.Errorf("not readable on the control plane: %v", err)
	}
	if !st.Mode().IsRegular() {
		return "", nil, fmt.Errorf("resolves to %s, which is not a regular file", real)
	}
	if !insideAny(real, roots) {
		return "", nil, fmt.Errorf("resolves to %s, outside the image directories (%s)", real, strings.Join(roots, ", "))
	}
	return real, st, nil
}

// insideAny reports whether the resolved path p lies strictly inside one
// of roots.
func insideAny(p string, roots []string) bool {
	for _, r := range roots {
		prefix := strings.TrimSuffix(r, string(filepath.Separator)) + string(filepath.Separator)
		if strings.HasPrefix(p, prefix) && len(p) > len(prefix) {
			return true
		}
	}
	return false
}
