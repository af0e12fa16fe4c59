package ipam

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// Kinds of error. Every error this package returns is an *Error that wraps
// one of them, so that the control plane can map it to a status with
// errors.Is.
var (
	// ErrInvalid: an argument or a loaded value breaks a rule (a bad
	// subnet, key, address or VNI range; a damaged pool).
	ErrInvalid = errors.New("invalid")
	// ErrTaken: the address asked for is another member's, or the member
	// already has a different one.
	ErrTaken = errors.New("taken")
	// ErrFull: every address of the subnet, or every VNI of the range, is
	// assigned.
	ErrFull = errors.New("full")
)

// MaxKeyLen is the longest key (member ID or network ID) a Pool or VNIs
// takes, in bytes.
const MaxKeyLen = 256

// Error is one problem with one field.
type Error struct {
	// Field is the path of the field, e.g. "subnet", "address" or
	// `assigned["w0a1b"]` (map keys as in spec.FieldPath). A caller that
	// embeds the value in a larger document prefixes its own path.
	Field string `json:"field"`
	// Reason says what is wrong, e.g. "prefix /8 is too large: ...".
	Reason string `json:"reason"`
	// Kind is ErrInvalid, ErrTaken or ErrFull.
	Kind error `json:"-"`
}

// Error returns "field: reason".
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unwrap returns the kind, for errors.Is.
func (e *Error) Unwrap() error { return e.Kind }

func invalid(field, reason string) *Error {
	return &Error{Field: field, Reason: reason, Kind: ErrInvalid}
}

// checkKey returns why key cannot name a member or a network, or "". Keys
// must be valid UTF-8 because encoding/json replaces invalid bytes in map
// keys, and a stored key must come back as it was written.
func checkKey(key string) string {
	switch {
	case key == "":
		return "required"
	case len(key) > MaxKeyLen:
		return "must be at most " + strconv.Itoa(MaxKeyLen) + " bytes, got " + strconv.Itoa(len(key))
	case !utf8.ValidString(key):
		return "must be valid UTF-8"
	}
	return ""
}

// fieldPath appends key to a field path the way spec.FieldPath does:
// "a.b" for plain keys, `a["x-y"]` for others.
func fieldPath(path, key string) string {
	if !plainKey(key) {
		return path + "[" + quoteShort(key) + "]"
	}
	return path + "." + key
}

func plainKey(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range []byte(s) {
		letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// quoteShort quotes s, cut to 40 bytes, so that a huge input does not make
// a huge error.
func quoteShort(s string) string {
	const limit = 40
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}
