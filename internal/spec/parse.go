package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v2"

	"vgrid/internal/model"
)

// MaxSize is the largest spec Parse accepts, in bytes.
const MaxSize = 1 << 20

// maxDepth bounds the nesting of a document. A spec is three levels deep;
// the bound only keeps hostile input from recursing without limit.
const maxDepth = 64

// Parse reads a workspace spec written as YAML or as JSON (JSON when the
// first non-space byte is '{'), then validates it without an image lookup.
//
// Problems with fields (unknown fields, wrong types, bad values, failed
// validation) come back as *FieldErrors; syntax errors and other problems
// with the document as a whole as plain errors, with a line number when
// one is known.
func Parse(data []byte) (model.WorkspaceSpec, error) {
	root, err := parseTree(data)
	if err != nil {
		return model.WorkspaceSpec{}, err
	}
	if root.kind != kindObject {
		if root.kind == kindNull {
			return model.WorkspaceSpec{}, errors.New("parse spec: empty document")
		}
		return model.WorkspaceSpec{}, fmt.Errorf("parse spec: want an object, got %s", root.describe())
	}
	var s model.WorkspaceSpec
	if err := decode(root, &s); err != nil {
		return model.WorkspaceSpec{}, err
	}
	normalize(&s)
	if err := Validate(s, nil); err != nil {
		return model.WorkspaceSpec{}, err
	}
	return s, nil
}

// normalize makes empty lists and maps nil, so that a spec survives a
// round trip through JSON (which omits them) unchanged.
func normalize(s *model.WorkspaceSpec) {
	s.Volumes = normalizeVolumes(s.Volumes)
	if c := s.Context; c != nil {
		if len(c.SSHKeys) == 0 {
			c.SSHKeys = nil
		}
		if len(c.Env) == 0 {
			c.Env = nil
		}
	}
}

// parseTree turns the document into a syntax tree of generic values.
func parseTree(data []byte) (*node, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("parse spec: %d bytes is larger than the %d allowed", len(data), MaxSize)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("parse spec: empty document")
	}
	if trimmed[0] == '{' {
		return parseJSON(data)
	}
	return parseYAML(data)
}

type nodeKind int

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindObject
	kindArray
)

// node is one value of a parsed document. Objects keep their keys in a
// stable order (document order for JSON, sorted for YAML).
type node struct {
	kind nodeKind
	// str is a string's value or a number's literal ("12", "0.5", "1e+30",
	// or ".nan", ".inf", "-.inf" for YAML's non-finite floats).
	str       string
	b         bool
	keys      []string // object
	vals      []*node  // object values, or array items
	nonFinite bool     // a non-finite number (YAML .nan, .inf)
}

// describe renders the value for "got ..." in error messages.
func (n *node) describe() string {
	switch n.kind {
	case kindNull:
		return "null"
	case kindBool:
		return "bool " + strconv.FormatBool(n.b)
	case kindNumber:
		return "number " + n.str
	case kindString:
		return "string " + quoteShort(n.str)
	case kindObject:
		return "an object"
	case kindArray:
		return "a list"
	}
	return "a value"
}

// quoteShort quotes s, cutting it short if it is long.
func quoteShort(s string) string {
	const limit = 40
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// lineAt returns the 1-based line of byte offset off in data.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// parseJSON reads exactly one JSON value, rejecting duplicate keys and
// trailing data.
func parseJSON(data []byte) (*node, error) {
	p := &jsonParser{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	root, err := p.value("", 0)
	if err != nil {
		return nil, err
	}
	off := p.dec.InputOffset()
	rest := data[off:]
	if trimmed := bytes.TrimLeft(rest, " \t\r\n"); len(trimmed) > 0 {
		at := off + int64(len(rest)-len(trimmed))
		return nil, fmt.Errorf("parse spec: json: line %d: unexpected data after the top-level object", lineAt(data, at))
	}
	return root, nil
}

type jsonParser struct {
	data []byte
	dec  *json.Decoder
}

func (p *jsonParser) syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("parse spec: json: line %d: %v (a document starting with '{' is read as JSON)", lineAt(p.data, se.Offset), se)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("parse spec: json: line %d: unexpected end of input", lineAt(p.data, int64(len(p.data))))
	}
	return fmt.Errorf("parse spec: json: %w", err)
}

func (p *jsonParser) value(path string, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("parse spec: json: line %d: nested more than %d levels deep", lineAt(p.data, p.dec.InputOffset()), maxDepth)
	}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntaxError(err)
	}
	switch t := tok.(type) {
	case nil:
		return &node{kind: kindNull}, nil
	case bool:
		return &node{kind: kindBool, b: t}, nil
	case json.Number:
		return &node{kind: kindNumber, str: string(t)}, nil
	case string:
		return &node{kind: kindString, str: t}, nil
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: kindObject}
			seen := map[string]bool{}
			for p.dec.More() {
				keyOff := p.dec.InputOffset()
				kt, err := p.dec.Token()
				if err != nil {
					return nil, p.syntaxError(err)
				}
				key, ok := kt.(string)
				if !ok { // the decoder reports this as a syntax error first
					return nil, fmt.Errorf("parse spec: json: line %d: object key is not a string", lineAt(p.data, keyOff))
				}
				child := FieldPath(path, key)
				if seen[key] {
					return nil, &FieldErrors{list: []FieldError{{
						Field:  child,
						Reason: fmt.Sprintf("duplicate key (line %d)", lineAt(p.data, p.dec.InputOffset())),
					}}}
				}
				seen[key] = true
				v, err := p.value(child, depth+1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, key)
				n.vals = append(n.vals, v)
			}
			if _, err := p.dec.Token(); err != nil { // '}'
				return nil, p.syntaxError(err)
			}
			return n, nil
		case '[':
			n := &node{kind: kindArray}
			for i := 0; p.dec.More(); i++ {
				v, err := p.value(fmt.Sprintf("%s[%d]", path, i), depth+1)
				if err != nil {
					return nil, err
				}
				n.vals = append(n.vals, v)
			}
			if _, err := p.dec.Token(); err != nil { // ']'
				return nil, p.syntaxError(err)
			}
			return n, nil
		}
	}
	return nil, fmt.Errorf("parse spec: json: line %d: unexpected %v", lineAt(p.data, p.dec.InputOffset()), tok)
}

// parseYAML reads exactly one YAML document, rejecting duplicate keys.
func parseYAML(data []byte) (*node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.SetStrict(true) // duplicate keys are errors
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("parse spec: empty document")
		}
		if fe := duplicateKeys(data, err); fe != nil {
			return nil, fe
		}
		return nil, yamlError(err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(err)
		}
		return nil, errors.New("parse spec: yaml: more than one document (a spec is a single document)")
	}
	return fromYAML(v, "", 0)
}

// yamlError flattens yaml's multi-line errors into one line.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = strings.Replace(strings.TrimSpace(m), "already set in map", "is duplicated", 1)
		}
		return fmt.Errorf("parse spec: yaml: %s", strings.Join(msgs, "; "))
	}
	return fmt.Errorf("parse spec: %s", strings.Join(strings.Fields(err.Error()), " "))
}

// duplicateKeys turns go-yaml's duplicate-key errors, which name only the
// key and its line, into field errors with full paths. It decodes the
// document again, keeping duplicates, to find the paths. It returns nil if
// err is not about duplicate keys.
func duplicateKeys(data []byte, err error) *FieldErrors {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return nil
	}
	var lines []int
	for _, m := range te.Errors {
		var line int
		var key string
		if strings.Contains(m, "already set in map") {
			if _, serr := fmt.Sscanf(m, "line %d: key %s", &line, &key); serr == nil {
				lines = append(lines, line)
				continue
			}
		}
		return nil // something else: report go-yaml's message as it is
	}
	var doc yaml.MapSlice
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	var paths []string
	findDuplicates(doc, "", &paths, 0)
	if len(paths) == 0 {
		return nil
	}
	fe := &FieldErrors{}
	for i, p := range paths {
		reason := "duplicate key"
		if len(paths) == len(lines) {
			reason = fmt.Sprintf("duplicate key (line %d)", lines[i])
		}
		fe.add(p, reason)
	}
	return fe
}

// findDuplicates appends the paths of keys that occur twice in one mapping.
func findDuplicates(v any, path string, out *[]string, depth int) {
	if depth > maxDepth {
		return
	}
	switch t := v.(type) {
	case yaml.MapSlice:
		seen := map[string]bool{}
		for _, item := range t {
			id := fmt.Sprintf("%T:%v", item.Key, item.Key)
			child := FieldPath(path, fmt.Sprint(item.Key))
			if seen[id] {
				*out = append(*out, child)
			}
			seen[id] = true
			findDuplicates(item.Value, child, out, depth+1)
		}
	case []any:
		for i, item := range t {
			findDuplicates(item, fmt.Sprintf("%s[%d]", path, i), out, depth+1)
		}
	}
}

// fromYAML converts what go-yaml decoded into a node tree. Object keys are
// sorted, so that errors come out in a stable order.
func fromYAML(v any, path string, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("parse spec: yaml: %s: nested more than %d levels deep", path, maxDepth)
	}
	switch t := v.(type) {
	case nil:
		return &node{kind: kindNull}, nil
	case bool:
		return &node{kind: kindBool, b: t}, nil
	case string:
		return &node{kind: kindString, str: t}, nil
	case int:
		return &node{kind: kindNumber, str: strconv.Itoa(t)}, nil
	case int64:
		return &node{kind: kindNumber, str: strconv.FormatInt(t, 10)}, nil
	case uint64:
		return &node{kind: kindNumber, str: strconv.FormatUint(t, 10)}, nil
	case float64:
		switch {
		case math.IsNaN(t):
			return &node{kind: kindNumber, str: ".nan", nonFinite: true}, nil
		case math.IsInf(t, 1):
			return &node{kind: kindNumber, str: ".inf", nonFinite: true}, nil
		case math.IsInf(t, -1):
			return &node{kind: kindNumber, str: "-.inf", nonFinite: true}, nil
		}
		return &node{kind: kindNumber, str: strconv.FormatFloat(t, 'g', -1, 64)}, nil
	case []any:
		n := &node{kind: kindArray}
		for i, item := range t {
			c, err := fromYAML(item, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, c)
		}
		return n, nil
	case map[any]any:
		keys := make([]string, 0, len(t))
		byKey := make(map[string]any, len(t))
		for k, val := range t {
			ks, ok := k.(string)
			if !ok {
				fe := &FieldErrors{}
				reason := fmt.Sprintf("key %v is not a string", k)
				if _, isBool := k.(bool); isBool {
					reason += " (YAML reads unquoted yes/no/on/off/y/n as booleans: quote the key)"
				}
				fe.add(orRoot(path), reason)
				return nil, fe
			}
			keys = append(keys, ks)
			byKey[ks] = val
		}
		sort.Strings(keys)
		n := &node{kind: kindObject}
		for _, k := range keys {
			c, err := fromYAML(byKey[k], FieldPath(path, k), depth+1)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k)
			n.vals = append(n.vals, c)
		}
		return n, nil
	}
	fe := &FieldErrors{}
	fe.add(orRoot(path), fmt.Sprintf("unsupported YAML value of type %T", v))
	return nil, fe
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// FieldPath appends key to a field path: "a.b" for plain keys, `a["x y"]`
// for others. Every field error of the API names its field this way.
func FieldPath(path, key string) string {
	if !plainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// orRoot names the document itself when path is empty.
func orRoot(path string) string {
	if path == "" {
		return "spec"
	}
	return path
}
