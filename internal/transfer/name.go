package transfer

import (
	"errors"
	"fmt"
	"strings"
)

// File is a file of a transfer. On the source side Name is what the peer
// asks for and Path is where the file is; Size, if not zero, must be the
// file's size when it is served (a file that changed is refused). Fetch
// returns the files it placed, Path being their place under the staging
// directory.
type File struct {
	Name string
	Path string
	Size int64
}

const (
	maxNameLen    = 1024
	maxElementLen = 255
	partSuffix    = ".part"
)

// ValidName reports why name is not an acceptable file name of a transfer:
// a relative, slash-separated path of elements made of [A-Za-z0-9._-], none
// of them empty, "." or "..".
func ValidName(name string) error {
	if name == "" {
		return errors.New("empty file name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("file name %.40q…: longer than %d bytes", name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("file name %q: character %q not allowed (only A-Z a-z 0-9 . _ - /)", name, name[i])
		}
	}
	if name[0] == '/' {
		return fmt.Errorf("file name %q: absolute", name)
	}
	for _, el := range strings.Split(name, "/") {
		switch {
		case el == "":
			return fmt.Errorf("file name %q: empty path element", name)
		case el == "." || el == "..":
			return fmt.Errorf("file name %q: %q element not allowed", name, el)
		case len(el) > maxElementLen:
			return fmt.Errorf("file name %q: path element longer than %d bytes", name, maxElementLen)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '/'
}

// validID reports why id is not an acceptable transfer id: one path element
// of [A-Za-z0-9._-], at most 255 bytes, not "." or "..".
func validID(id string) error {
	if strings.Contains(id, "/") {
		return fmt.Errorf("transfer id %q: '/' not allowed", id)
	}
	if err := ValidName(id); err != nil {
		return fmt.Errorf("transfer id %q: invalid (one element of A-Z a-z 0-9 . _ -)", id)
	}
	return nil
}

// checkNames checks a list of names: each valid, and no two of the paths
// Fetch creates for them (name and name+".part") equal or one a directory
// of another ("a" and "a/b", or "a" and "a.part").
func checkNames(names []string) error {
	owner := make(map[string]string, 2*len(names))
	for _, n := range names {
		if err := ValidName(n); err != nil {
			return err
		}
		for _, p := range []string{n, n + partSuffix} {
			if o, dup := owner[p]; dup {
				if o == n {
					return fmt.Errorf("file name %q: listed twice", n)
				}
				return fmt.Errorf("file names %q and %q collide (at %q)", o, n, p)
			}
			owner[p] = n
		}
	}
	for p, n := range owner {
		for i := 0; i < len(p); i++ {
			if p[i] != '/' {
				continue
			}
			if o, ok := owner[p[:i]]; ok {
				return fmt.Errorf("file names %q and %q collide (%q is both a file and a directory)", o, n, p[:i])
			}
		}
	}
	return nil
}
