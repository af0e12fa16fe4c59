package policyfile

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v2"
)

// node is one YAML value, decoded before the schema says what type it
// should have. Decoding every value on its own keeps the YAML decoder's
// complaints about it (a bad tag, a list used as a key) with its field.
type node struct {
	isMap bool
	m     map[any]node
	v     any   // a scalar, or []any for a list; nil (with !isMap) for null
	err   error // what the YAML decoder said about this value
}

// UnmarshalYAML decodes the value as a mapping of nodes if it is one, else
// as a generic value. It never fails: a problem is kept in n.err. The YAML
// decoder does not call it for nulls, which leave the zero node.
func (n *node) UnmarshalYAML(unmarshal func(any) error) error {
	var m map[any]node
	err := unmarshal(&m)
	if err == nil {
		n.isMap, n.m = true, m
		return nil
	}
	if te := (*yaml.TypeError)(nil); !errors.As(err, &te) {
		n.err = err // a bad key, merge or alias: not a question of type
		return nil
	}
	// Not a mapping: a scalar or a list.
	if err := unmarshal(&n.v); err != nil {
		n.v, n.err = nil, err
	}
	return nil
}

// null reports whether the value is null (or absent).
func (n node) null() bool { return !n.isMap && n.v == nil && n.err == nil }

// get returns the value of a key of a mapping; null if there is none.
func (n node) get(key string) node { return n.m[key] }

// keys returns the keys of a mapping in a fixed order, for errors that do
// not depend on Go's map order.
func (n node) keys() []any {
	keys := make([]any, 0, len(n.m))
	for k := range n.m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keyName(keys[i]), keyName(keys[j])
		if a != b {
			return a < b
		}
		return fmt.Sprintf("%T", keys[i]) < fmt.Sprintf("%T", keys[j])
	})
	return keys
}

// check returns the decoder's complaint about n as an error at path.
func (n node) check(path string) error {
	if n.err == nil {
		return nil
	}
	return &Error{Field: path, Reason: yamlReason(n.err)}
}

// describe names the value for an error message.
func (n node) describe() string {
	if n.isMap {
		return "a mapping"
	}
	switch v := n.v.(type) {
	case nil:
		return "null"
	case string:
		if utf8.RuneCountInString(v) > 40 {
			v = string([]rune(v)[:40]) + "..."
		}
		return strconv.Quote(v)
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v)
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", n.v)
}

// yamlReason is a YAML decoder error without its "yaml: " prefix.
func yamlReason(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return strings.Join(te.Errors, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// parseTree decodes the document; a null node for an empty one.
func parseTree(data []byte) (node, error) {
	text, err := utf8Text(data)
	if err != nil {
		return node{}, err
	}
	doc, err := decode(text)
	if err != nil {
		e := &Error{Reason: yamlReason(err)}
		if m := lineRE.FindStringSubmatch(e.Reason); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Reason = m[2]
			// At the end of the document, yaml.v2 can count one line
			// too many.
			e.Line = min(e.Line, lineCount(text))
		} else {
			e.Line = locate(text, err.Error())
		}
		return node{}, e
	}
	if !doc.null() && !doc.isMap {
		return node{}, &Error{Line: firstContentLine(text),
			Reason: "want a mapping of settings (backfill, placement, suspend, migrate, fair_share, quotas, overcommit), got " + doc.describe()}
	}
	return doc, nil
}

var lineRE = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)

// decode runs the YAML decoder; a problem with the document as a whole
// (its syntax, or its top-level mapping) is an error.
func decode(text []byte) (node, error) {
	var doc node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return node{}, err
	}
	if doc.err != nil {
		return node{}, doc.err
	}
	return doc, nil
}

// maxLocate bounds the work locate does.
const maxLocate = 1 << 16

// locate finds the line of a problem that the YAML decoder reports
// without one (it leaves the line out on line 1, and for problems it
// finds after parsing: an unknown anchor, a list as a key, a bad merge):
// the first line such that the document up to it has the same problem.
func locate(text []byte, msg string) int {
	if len(text) <= maxLocate {
		for i, line := 0, 1; i < len(text); line++ {
			j := bytes.IndexByte(text[i:], '\n')
			if j < 0 {
				j = len(text)
			} else {
				j += i + 1
			}
			if _, err := decode(text[:j]); err != nil && err.Error() == msg {
				return line
			}
			i = j
		}
	}
	return firstContentLine(text)
}

// firstContentLine is the line on which the document's value starts,
// after blank lines, comments, directives and a bare "---".
func firstContentLine(text []byte) int {
	for i, line := range strings.Split(string(text), "\n") {
		if i == 0 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		s := strings.TrimSpace(line)
		if s == "" || s[0] == '#' || s[0] == '%' || s == "---" || strings.HasPrefix(s, "--- #") {
			continue
		}
		return i + 1
	}
	return 1
}

// utf8Text returns the document as UTF-8, converting it from UTF-16 if it
// starts with a UTF-16 byte order mark, and checks that it holds only
// characters YAML allows. The YAML decoder would find the same problems,
// but without saying where.
func utf8Text(data []byte) ([]byte, error) {
	var order func(b []byte) rune
	switch {
	case bytes.HasPrefix(data, []byte{0xff, 0xfe}):
		order = func(b []byte) rune { return rune(b[0]) | rune(b[1])<<8 }
	case bytes.HasPrefix(data, []byte{0xfe, 0xff}):
		order = func(b []byte) rune { return rune(b[0])<<8 | rune(b[1]) }
	}
	var lines lineCounter
	if order != nil {
		out := make([]byte, 0, len(data))
		for i := 2; i < len(data); {
			if len(data)-i < 2 {
				return nil, &Error{Line: lines.n(), Reason: "incomplete UTF-16 character at the end"}
			}
			r := order(data[i:])
			i += 2
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return nil, &Error{Line: lines.n(), Reason: fmt.Sprintf("invalid UTF-16: low surrogate %#04x without a high one", r)}
			case r >= 0xd800 && r <= 0xdbff:
				if len(data)-i < 2 {
					return nil, &Error{Line: lines.n(), Reason: "incomplete UTF-16 surrogate pair at the end"}
				}
				lo := order(data[i:])
				if lo < 0xdc00 || lo > 0xdfff {
					return nil, &Error{Line: lines.n(), Reason: fmt.Sprintf("invalid UTF-16: high surrogate %#04x without a low one", r)}
				}
				i += 2
				r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
			}
			lines.add(r)
			out = utf8.AppendRune(out, r)
		}
		data = out
		lines = lineCounter{}
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return nil, &Error{Line: lines.n(), Reason: fmt.Sprintf("invalid UTF-8 (byte %#02x at column %d)", data[i], lines.col())}
		}
		if !allowed(r) {
			return nil, &Error{Line: lines.n(), Reason: fmt.Sprintf("character %U at column %d is not allowed in YAML", r, lines.col())}
		}
		lines.add(r)
		i += size
	}
	return data, nil
}

// lineCount is the number of lines in text; a line break at the end does
// not start another.
func lineCount(text []byte) int {
	var c lineCounter
	for _, r := range string(text) {
		c.add(r)
	}
	if c.chars == 0 && c.breaks > 0 {
		return c.breaks
	}
	return c.n()
}

// allowed reports whether YAML allows the character in a document.
func allowed(r rune) bool {
	return r == 0x09 || r == 0x0a || r == 0x0d || r >= 0x20 && r <= 0x7e || r == 0x85 ||
		r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff
}

// lineCounter counts lines as YAML does: LF, CR, CR LF, NEL, LS and PS
// end a line.
type lineCounter struct {
	breaks int
	chars  int // on the current line so far
	cr     bool
}

func (c *lineCounter) add(r rune) {
	switch {
	case r == '\n' && c.cr:
		// the LF of a CR LF
	case r == '\n' || r == '\r' || r == 0x85 || r == 0x2028 || r == 0x2029:
		c.breaks++
		c.chars = 0
	default:
		c.chars++
	}
	c.cr = r == '\r'
}

// n is the current line, col the current column, from 1.
func (c *lineCounter) n() int   { return c.breaks + 1 }
func (c *lineCounter) col() int { return c.chars + 1 }
