package server

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/spec"
)

// Strict decoding of the agent protocol's and the admin API's JSON bodies.
// Unlike encoding/json alone, decodeStrict refuses unknown fields, field
// names that match only when case is ignored, duplicate fields, nulls for
// fields that cannot be null, and anything after the value, and names each
// bad field by its JSON path ("report.state", "node.capacity.millicpu").
// The values themselves are still encoding/json's to decode (and model's
// types' UnmarshalJSON); the validators in internal/control check them.

// maxDecodeDepth bounds nesting; the bodies are a few levels deep.
const maxDecodeDepth = 32

// maxDecodeErrors bounds the problems one body reports.
const maxDecodeErrors = 20

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	timeType            = reflect.TypeFor[time.Time]()
)

// decodeStrict decodes body, one JSON value, into v (a pointer). root
// names the body in errors: "report" gives "report.state"; "" names fields
// by their own keys ("node.name" for a body {"node": {...}}) and the body
// as a whole "body". The error is a 400 listing each bad field.
func decodeStrict(root string, body []byte, v any) error {
	whole := root
	if whole == "" {
		whole = "body"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		reason := syntaxReason(err)
		return badRequest(whole+": "+reason, api.FieldError{Field: whole, Reason: reason})
	}
	if _, err := dec.Token(); err != io.EOF {
		const reason = "data after the JSON value"
		return badRequest(whole+": "+reason, api.FieldError{Field: whole, Reason: reason})
	}
	d := &strictDecoder{}
	d.value(root, raw, reflect.ValueOf(v).Elem(), 0)
	if len(d.fields) == 0 {
		return nil
	}
	msg := make([]string, 0, 3)
	for i, f := range d.fields {
		if i == 3 {
			msg = append(msg, fmt.Sprintf("and %d more", len(d.fields)-3+d.dropped))
			break
		}
		msg = append(msg, f.Field+": "+f.Reason)
	}
	return badRequest("invalid "+whole+": "+strings.Join(msg, "; "), d.fields...)
}

func syntaxReason(err error) string {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return "empty body: want a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON value is cut short"
	case errors.As(err, &se):
		return fmt.Sprintf("not JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

type strictDecoder struct {
	fields  []api.FieldError
	dropped int
}

func (d *strictDecoder) fail(path, format string, args ...any) {
	if path == "" {
		path = "body"
	}
	if len(d.fields) >= maxDecodeErrors {
		d.dropped++
		return
	}
	d.fields = append(d.fields, api.FieldError{Field: path, Reason: fmt.Sprintf(format, args...)})
}

// value decodes raw (one syntactically valid JSON value) into v.
func (d *strictDecoder) value(path string, raw json.RawMessage, v reflect.Value, depth int) {
	if depth > maxDecodeDepth {
		d.fail(path, "nested too deeply")
		return
	}
	raw = bytes.TrimSpace(raw)
	isNull := bytes.Equal(raw, []byte("null"))
	t := v.Type()
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		if isNull {
			v.SetZero()
			return
		}
	default:
		if isNull {
			d.fail(path, "want %s, got null", describeType(t))
			return
		}
	}
	if t.Kind() != reflect.Pointer && (reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType)) {
		if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
			d.fail(path, "%s", leafReason(t, err))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.value(path, raw, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Struct:
		d.object(path, raw, v, depth)
	case reflect.Map:
		d.mapping(path, raw, v, depth)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			// Bytes are a base64 string, as encoding/json has them.
			if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
				d.fail(path, "want base64 data: %s", strings.TrimPrefix(err.Error(), "json: "))
			}
			return
		}
		d.list(path, raw, v, depth)
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
			d.fail(path, "%s", leafReason(t, err))
		}
	default:
		d.fail(path, "cannot decode into %s", t) // a programming error
	}
}

// members reads the keys and values of an object, in order; ok is false
// (and a problem noted) when raw is not an object.
func (d *strictDecoder) members(path string, raw json.RawMessage, what string) (keys []string, vals []json.RawMessage, ok bool) {
	if len(raw) == 0 || raw[0] != '{' {
		d.fail(path, "want %s, got %s", what, describeRaw(raw))
		return nil, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		d.fail(path, "%s", syntaxReason(err))
		return nil, nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			d.fail(path, "%s", syntaxReason(err))
			return nil, nil, false
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			d.fail(path, "%s", syntaxReason(err))
			return nil, nil, false
		}
		keys, vals = append(keys, key), append(vals, val)
	}
	return keys, vals, true
}

func (d *strictDecoder) object(path string, raw json.RawMessage, v reflect.Value, depth int) {
	keys, vals, ok := d.members(path, raw, "an object")
	if !ok {
		return
	}
	fields := fieldsOf(v.Type())
	seen := make(map[string]bool, len(keys))
	for i, key := range keys {
		child := spec.FieldPath(path, key)
		if seen[key] {
			d.fail(child, "given twice")
			continue
		}
		seen[key] = true
		idx, ok := fields[key]
		if !ok {
			d.fail(child, "unknown field")
			continue
		}
		d.value(child, vals[i], v.FieldByIndex(idx), depth+1)
	}
}

func (d *strictDecoder) mapping(path string, raw json.RawMessage, v reflect.Value, depth int) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.fail(path, "cannot decode into %s", t) // a programming error
		return
	}
	keys, vals, ok := d.members(path, raw, "an object")
	if !ok {
		return
	}
	m := reflect.MakeMapWithSize(t, len(keys))
	for i, key := range keys {
		child := spec.FieldPath(path, key)
		k := reflect.ValueOf(key).Convert(t.Key())
		if m.MapIndex(k).IsValid() {
			d.fail(child, "given twice")
			continue
		}
		elem := reflect.New(t.Elem()).Elem()
		d.value(child, vals[i], elem, depth+1)
		m.SetMapIndex(k, elem)
	}
	v.Set(m)
}

func (d *strictDecoder) list(path string, raw json.RawMessage, v reflect.Value, depth int) {
	if len(raw) == 0 || raw[0] != '[' {
		d.fail(path, "want a list, got %s", describeRaw(raw))
		return
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		d.fail(path, "%s", syntaxReason(err))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		d.value(fmt.Sprintf("%s[%d]", path, i), item, s.Index(i), depth+1)
	}
	v.Set(s)
}

// fieldsOf maps a struct's JSON names (exactly as tagged) to field
// indexes, embedded structs' fields included as encoding/json sees them.
func fieldsOf(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" && !strings.HasPrefix(tag, "-,") {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, dup := out[name]; !dup {
				out[name] = idx
			}
		}
	}
	walk(t, nil)
	return out
}

// leafReason says why a value did not decode into t.
func leafReason(t reflect.Type, err error) string {
	if t == timeType {
		return "want an RFC 3339 time such as 2026-11-24T13:00:00Z"
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("want %s, got %s", describeType(t), ute.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func describeType(t reflect.Type) string {
	if t == timeType {
		return "an RFC 3339 time"
	}
	switch t.Kind() {
	case reflect.String:
		if t.PkgPath() != "" {
			return "a string (" + t.Name() + ")"
		}
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if t.PkgPath() != "" {
			return "a value (" + t.Name() + ")"
		}
		return fmt.Sprintf("an integer of at most %d bits", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a non-negative integer of at most %d bits", t.Bits())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct:
		return "an object"
	}
	return "a value"
}

// describeRaw names the kind of a JSON value for an error.
func describeRaw(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// readConsole reads a console tail of at most control.MaxConsole bytes
// (what an agent uploads); a longer one is refused, not cut.
func readConsole(r *http.Request) ([]byte, error) {
	tooLong := func() error {
		reason := fmt.Sprintf("at most %d bytes (the tail of the console)", control.MaxConsole)
		return &httpError{http.StatusRequestEntityTooLarge, api.CodeInvalid, "console: " + reason,
			[]api.FieldError{{Field: "console", Reason: reason}}}
	}
	if r.ContentLength > control.MaxConsole {
		return nil, tooLong()
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, control.MaxConsole+1))
	if err != nil {
		return nil, badRequest("read body: " + err.Error())
	}
	if len(b) > control.MaxConsole {
		return nil, tooLong()
	}
	return b, nil
}
