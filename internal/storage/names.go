package storage

import (
	"errors"
	"fmt"
)

// MaxNameLen is the longest volume name.
const MaxNameLen = 63

// Errors callers may test with errors.Is.
var (
	ErrNotFound = errors.New("no such volume")
	ErrExists   = errors.New("volume exists")
	ErrExported = errors.New("volume is exported")
	ErrClosed   = errors.New("storage daemon closed")
)

// ValidateName checks a volume name: 1 to 63 characters of a-z, 0-9 and
// '-'. field names the argument in the error (e.g. "name", "snap").
func ValidateName(field, name string) error {
	if name == "" {
		return fmt.Errorf("%s: empty volume name", field)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%s: volume name is %d characters long, at most %d allowed", field, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' {
			continue
		}
		return fmt.Errorf("%s: volume name %q: character %q at %d is not one of a-z, 0-9, '-'", field, name, c, i)
	}
	return nil
}

// validateSize checks a volume size: positive and a multiple of 512.
func validateSize(field string, size int64) error {
	if size <= 0 {
		return fmt.Errorf("%s: %d bytes: must be positive", field, size)
	}
	if size%512 != 0 {
		return fmt.Errorf("%s: %d bytes: must be a multiple of 512", field, size)
	}
	return nil
}
