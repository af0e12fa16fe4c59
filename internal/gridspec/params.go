package gridspec

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v2"

	"vgrid/internal/spec"
)

// Limits of parameters.
const (
	// MaxParams is the most parameters a grid declares.
	MaxParams = 64
	// MaxValueLen is the longest value of a parameter, in bytes.
	MaxValueLen = 1024
	maxNameLen  = 63
)

// paramName is the rule of a parameter's name.
var paramName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// marker stands for every reference while the file's params are read
// (before any value is known): plain text that keeps the YAML structure.
const marker = "vgrid_param_ref_0d9e"

// segment is a reference (${name}) or an escape ($${) found in the text,
// at data[start:end].
type segment struct {
	start, end int
	name       string // "" for an escape
	line       int
}

// scan finds the references and escapes of data. A "${" that does not
// open a well-formed reference is an error naming its line.
func scan(data []byte) ([]segment, error) {
	var segs []segment
	var bad []string
	line := 1
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '\n':
			line++
		case c != '$':
		case bytes.HasPrefix(data[i:], []byte("$${")):
			segs = append(segs, segment{start: i, end: i + 3, line: line})
			i += 2
		case bytes.HasPrefix(data[i:], []byte("${")):
			rest := data[i+2:]
			end := bytes.IndexByte(rest[:min(len(rest), maxNameLen+1)], '}')
			if end < 0 || !paramName.Match(rest[:end]) {
				if len(bad) < 5 {
					bad = append(bad, fmt.Sprintf("line %d: %s is not a parameter reference (want ${name}, name of a-z, 0-9, '_' and '-' starting with a letter; write $${ for a literal ${)",
						line, quoteShort(string(data[i:i+2+min(len(rest), 24)]))))
				}
				continue
			}
			segs = append(segs, segment{start: i, end: i + 3 + end, name: string(rest[:end]), line: line})
			i += 2 + end
		}
	}
	if len(bad) > 0 {
		return nil, errors.New("parse spec: " + strings.Join(bad, "; "))
	}
	return segs, nil
}

// render writes data with every reference replaced by value(name) and
// every escape by "${". It fails once the result exceeds limit bytes.
func render(data []byte, segs []segment, value func(string) string, limit int) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(data))
	last := 0
	for _, s := range segs {
		out.Write(data[last:s.start])
		if s.name == "" {
			out.WriteString("${")
		} else {
			out.WriteString(value(s.name))
		}
		last = s.end
		if out.Len() > limit {
			return nil, fmt.Errorf("parse spec: with its parameters' values the grid is more than the %d bytes allowed", spec.MaxSize)
		}
	}
	out.Write(data[last:])
	if out.Len() > limit {
		return nil, fmt.Errorf("parse spec: with its parameters' values the grid is more than the %d bytes allowed", spec.MaxSize)
	}
	return out.Bytes(), nil
}

// declared reads the file's params (its defaults) from the text with its
// references stood in for by the marker. A param without a value (null)
// has no default: it must be given. Problems go to errs.
func declared(text []byte, errs *spec.FieldErrors) (map[string]*string, error) {
	// Keys are read as strings, so that a name such as n or y (a boolean
	// to YAML 1.1) is a name.
	var typed struct {
		Params any `yaml:"params"`
	}
	if err := yaml.Unmarshal(text, &typed); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, nil // not an object: the strict decoding says why
		}
		return nil, fmt.Errorf("parse spec: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	if typed.Params == nil {
		return nil, nil
	}
	var shape struct {
		Params map[string]any `yaml:"params"`
	}
	if _, ok := typed.Params.(map[any]any); !ok || yaml.Unmarshal(text, &shape) != nil {
		errs.Add("params", "want an object of NAME: VALUE (the parameters' defaults)")
		return nil, nil
	}
	m := shape.Params
	if len(m) > MaxParams {
		errs.Add("params", fmt.Sprintf("at most %d parameters allowed, got %d", MaxParams, len(m)))
		return nil, nil
	}
	// The raw text of every scalar (yaml reads 1.50 as 1.5): values are
	// inserted as written.
	var raw struct {
		Params map[string]string `yaml:"params"`
	}
	rawOK := yaml.Unmarshal(text, &raw) == nil
	out := make(map[string]*string, len(m))
	for name, v := range m {
		field := spec.FieldPath("params", name)
		if strings.Contains(name, marker) {
			errs.Add(field, "a parameter's name may not contain ${...}")
			continue
		}
		if why := nameProblem(name); why != "" {
			errs.Add(field, why)
			continue
		}
		switch v.(type) {
		case nil:
			out[name] = nil
			continue
		case map[any]any, []any:
			errs.Add(field, "want a value such as 2, 128Mi or 1h, not a list or an object")
			continue
		}
		s := fmt.Sprint(v)
		if rawOK {
			s = raw.Params[name]
		}
		if strings.Contains(s, marker) {
			errs.Add(field, "a default may not contain ${...} (the params are read before any reference is replaced)")
			continue
		}
		if why := valueProblem(s); why != "" {
			errs.Add(field, why)
			continue
		}
		out[name] = &s
	}
	return out, nil
}

// nameProblem says why name cannot name a parameter ("" when it can).
func nameProblem(name string) string {
	if paramName.MatchString(name) {
		return ""
	}
	return fmt.Sprintf("%s is not a parameter name: 1-%d characters of a-z, 0-9, '_' and '-', starting with a letter", quoteShort(name), maxNameLen)
}

// valueProblem says why v cannot be a parameter's value ("" when it can).
// A value is inserted into the text as it is, anywhere (a plain scalar,
// inside quotes, in a flow {...} or [...]), so it must not be able to
// change the file's structure: one line, none of the characters that
// delimit or quote YAML, no ": " and no indicator at its start.
func valueProblem(v string) string {
	switch {
	case len(v) > MaxValueLen:
		return fmt.Sprintf("is %d bytes, at most %d allowed", len(v), MaxValueLen)
	case !utf8.ValidString(v):
		return "must be UTF-8 text"
	case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return "must be one line of text without tabs or control characters (a value is inserted into the file as it is)"
	case strings.TrimSpace(v) != v:
		return "must not begin or end with a space"
	case strings.ContainsAny(v, "{}[],#\"'\\`"):
		return fmt.Sprintf("%s: a value may not contain any of { } [ ] , # \" ' \\ ` (it is inserted into the file as it is; write such text in the file itself)", quoteShort(v))
	case strings.Contains(v, ": ") || strings.HasSuffix(v, ":"):
		return fmt.Sprintf("%s: a value may not contain \": \" nor end with ':' (it is inserted into the file as it is)", quoteShort(v))
	case v != "" && strings.ContainsRune("!&*|>%@", rune(v[0])):
		return fmt.Sprintf("%s: a value may not start with %c (a YAML indicator)", quoteShort(v), v[0])
	case v == "-" || v == "?" || strings.HasPrefix(v, "- ") || strings.HasPrefix(v, "? "):
		return fmt.Sprintf("%s: a value may not start with \"%c \" (a YAML indicator)", quoteShort(v), v[0])
	}
	return ""
}

// effective merges the defaults, the values and the sets (NAME=VALUE, the
// last one of a name winning) into the values used. A value for a name
// the file does not declare is an error, as is a malformed one. Names
// without a value are left out.
func effective(decl map[string]*string, values map[string]string, sets []string, errs *spec.FieldErrors) map[string]string {
	out := make(map[string]string, len(decl))
	for k, v := range decl {
		if v != nil {
			out[k] = *v
		}
	}
	give := func(field, name, value string) {
		if _, ok := decl[name]; !ok {
			errs.Add(field, undeclared(name, decl))
			return
		}
		if why := valueProblem(value); why != "" {
			errs.Add(field, why)
			return
		}
		out[name] = value
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		give(spec.FieldPath("values", k), k, values[k])
	}
	for _, s := range sets {
		field := setName(s)
		name, value, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			errs.Add(field, "want NAME=VALUE, e.g. workers=4")
			continue
		}
		give(field, name, value)
	}
	return out
}

// undeclared explains a value given for a parameter the file lacks.
func undeclared(name string, decl map[string]*string) string {
	names := make([]string, 0, len(decl))
	for k := range decl {
		names = append(names, k)
	}
	slices.Sort(names)
	list := "none"
	if len(names) > 0 {
		list = strings.Join(names, ", ")
	}
	return fmt.Sprintf("the grid declares no parameter %s (its params: %s)", quoteShort(name), list)
}

// setName names a set in errors: "--set NAME=VALUE", cut short if long.
func setName(set string) string {
	const limit = 80
	if len(set) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(set[cut]) {
			cut--
		}
		set = set[:cut] + "..."
	}
	return "--set " + set
}

// substitute reads the params of data, merges the values and sets over
// them, checks every reference, and returns data with the references
// replaced, along with the values used.
func substitute(data []byte, values map[string]string, sets []string) ([]byte, map[string]string, error) {
	if len(data) > spec.MaxSize {
		return nil, nil, fmt.Errorf("parse spec: %d bytes is larger than the %d allowed", len(data), spec.MaxSize)
	}
	segs, err := scan(data)
	if err != nil {
		return nil, nil, err
	}
	// The marker is at most 5 times as long as a reference.
	stand, err := render(data, segs, func(string) string { return marker }, len(data)*5)
	if err != nil {
		return nil, nil, err
	}
	errs := &spec.FieldErrors{}
	decl, err := declared(stand, errs)
	if err != nil {
		return nil, nil, err
	}
	used := effective(decl, values, sets, errs)
	type use struct{ first, more int }
	uses := map[string]*use{}
	var order []string
	for _, s := range segs {
		if s.name == "" {
			continue
		}
		if u := uses[s.name]; u != nil {
			u.more++
			continue
		}
		uses[s.name] = &use{first: s.line}
		order = append(order, s.name)
	}
	for _, name := range order {
		u := uses[name]
		at := "line " + strconv.Itoa(u.first)
		if u.more > 0 {
			at += fmt.Sprintf(" and %d more", u.more)
		}
		field := spec.FieldPath("params", name)
		if _, ok := decl[name]; !ok {
			errs.Add(field, fmt.Sprintf("${%s} is used (%s) but not declared: declare it under params, with a default or with none (~) to require a value", name, at))
		} else if _, ok := used[name]; !ok {
			errs.Add(field, fmt.Sprintf("required: ${%s} (%s) has no default: give it with --set %s=VALUE or in a values file", name, at, name))
		}
	}
	if err := errs.Err(); err != nil {
		return nil, nil, err
	}
	out, err := render(data, segs, func(name string) string { return used[name] }, spec.MaxSize)
	if err != nil {
		return nil, nil, err
	}
	if len(used) == 0 {
		used = nil
	}
	return out, used, nil
}

// quoteShort quotes s, cut short if it is long.
func quoteShort(s string) string {
	const limit = 40
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}
