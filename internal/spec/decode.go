package spec

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"vgrid/internal/model"
)

var (
	byteSizeType = reflect.TypeFor[model.ByteSize]()
	bitRateType  = reflect.TypeFor[model.BitRate]()
	durationType = reflect.TypeFor[model.Duration]()
	timeType     = reflect.TypeFor[time.Time]()
)

// decode fills out (a pointer to a struct) from an object node, following
// the struct's json tags. Unlike encoding/json it matches names exactly,
// rejects unknown fields and nulls for non-nullable fields, and reports
// every problem with its field path.
func decode(n *node, out any) error {
	d := &decoder{errs: &FieldErrors{}}
	d.value("", n, reflect.ValueOf(out).Elem())
	return d.errs.orNil()
}

type decoder struct {
	errs *FieldErrors
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs.add(orRoot(path), fmt.Sprintf(format, args...))
}

func (d *decoder) want(path, what string, n *node) {
	d.fail(path, "want %s, got %s", what, n.describe())
}

func (d *decoder) value(path string, n *node, v reflect.Value) {
	switch v.Type() {
	case byteSizeType:
		d.byteSize(path, n, v)
		return
	case bitRateType:
		d.bitRate(path, n, v)
		return
	case durationType:
		d.duration(path, n, v)
		return
	case timeType:
		d.timestamp(path, n, v)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.kind == kindNull {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		d.value(path, n, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.object(path, n, v)
	case reflect.Map:
		d.mapping(path, n, v)
	case reflect.Slice:
		d.list(path, n, v)
	case reflect.String:
		if n.kind != kindString {
			d.want(path, "a string", n)
			return
		}
		v.SetString(n.str)
	case reflect.Bool:
		if n.kind != kindBool {
			d.want(path, "true or false", n)
			return
		}
		v.SetBool(n.b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.kind != kindNumber {
			d.want(path, "an integer", n)
			return
		}
		i, reason := parseInt(n, v.Type().Bits())
		if reason != "" {
			d.fail(path, "%s", reason)
			return
		}
		v.SetInt(i)
	case reflect.Float32, reflect.Float64:
		if n.kind != kindNumber {
			d.want(path, "a number", n)
			return
		}
		f, reason := parseFloat(n)
		if reason != "" {
			d.fail(path, "%s", reason)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(path, "cannot decode into %s", v.Type()) // a programming error
	}
}

type fieldInfo struct {
	names map[string]int // json name -> field index
}

var fieldCache sync.Map // reflect.Type -> *fieldInfo

func fieldsOf(t reflect.Type) *fieldInfo {
	if fi, ok := fieldCache.Load(t); ok {
		return fi.(*fieldInfo)
	}
	fi := &fieldInfo{names: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		fi.names[name] = i
	}
	fieldCache.Store(t, fi)
	return fi
}

func (d *decoder) object(path string, n *node, v reflect.Value) {
	if n.kind != kindObject {
		d.want(path, "an object", n)
		return
	}
	fi := fieldsOf(v.Type())
	for i, key := range n.keys {
		child := FieldPath(path, key)
		idx, ok := fi.names[key]
		if !ok {
			d.fail(child, "unknown field")
			continue
		}
		d.value(child, n.vals[i], v.Field(idx))
	}
}

func (d *decoder) mapping(path string, n *node, v reflect.Value) {
	if n.kind == kindNull {
		v.SetZero()
		return
	}
	if n.kind != kindObject {
		d.want(path, "an object", n)
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.fail(path, "cannot decode into %s", v.Type())
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.keys))
	for i, key := range n.keys {
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(FieldPath(path, key), n.vals[i], elem)
		m.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

func (d *decoder) list(path string, n *node, v reflect.Value) {
	if n.kind == kindNull {
		v.SetZero()
		return
	}
	if n.kind != kindArray {
		d.want(path, "a list", n)
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.vals), len(n.vals))
	for i, item := range n.vals {
		d.value(fmt.Sprintf("%s[%d]", path, i), item, s.Index(i))
	}
	v.Set(s)
}

// maxExactInt is the largest integer a float64 holds exactly.
const maxExactInt = 1 << 53

// parseInt reads an integer literal; an integral float such as 1e3 is
// accepted while it is exact. It returns a reason on failure.
func parseInt(n *node, bits int) (int64, string) {
	if n.nonFinite {
		return 0, fmt.Sprintf("want an integer, got %s", n.str)
	}
	i, err := strconv.ParseInt(n.str, 10, bits)
	if err == nil {
		return i, ""
	}
	if isRangeErr(err) {
		return 0, fmt.Sprintf("number %s is out of range", n.str)
	}
	f, err := strconv.ParseFloat(n.str, 64)
	if err != nil {
		if isRangeErr(err) {
			return 0, fmt.Sprintf("number %s is out of range", n.str)
		}
		return 0, fmt.Sprintf("want an integer, got number %s", n.str)
	}
	if f != math.Trunc(f) {
		return 0, fmt.Sprintf("want an integer, got number %s", n.str)
	}
	limit := math.Min(maxExactInt, math.Ldexp(1, bits-1)-1)
	if math.Abs(f) > limit {
		return 0, fmt.Sprintf("number %s is out of range", n.str)
	}
	return int64(f), ""
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// parseFloat reads a finite number.
func parseFloat(n *node) (float64, string) {
	if n.nonFinite {
		return 0, fmt.Sprintf("want a finite number, got %s", n.str)
	}
	f, err := strconv.ParseFloat(n.str, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		if isRangeErr(err) {
			return 0, fmt.Sprintf("number %s is out of range", n.str)
		}
		return 0, fmt.Sprintf("want a number, got number %s", n.str)
	}
	return f, ""
}

// maxByteSize mirrors model.ParseByteSize's bound.
const maxByteSize = math.MaxInt64 / 2

// decimal is a plain decimal number, possibly with an exponent.
var decimal = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// byteSize accepts "512Mi", "2Gi", "1G" or a number of bytes (as a number
// or as a string).
func (d *decoder) byteSize(path string, n *node, v reflect.Value) {
	const what = "a size such as 512Mi or 2Gi, or a number of bytes"
	var f float64
	switch n.kind {
	case kindNumber:
		if n.nonFinite {
			d.fail(path, "want a finite size, got %s", n.str)
			return
		}
		var err error
		f, err = strconv.ParseFloat(n.str, 64)
		if err != nil && !isRangeErr(err) {
			d.want(path, what, n)
			return
		}
	case kindString:
		s := strings.TrimSpace(n.str)
		if !decimal.MatchString(s) {
			b, err := model.ParseByteSize(s)
			if err != nil {
				d.fail(path, "%v", err)
				return
			}
			v.SetInt(int64(b))
			return
		}
		f, _ = strconv.ParseFloat(s, 64) // infinite when out of range
	default:
		d.want(path, what, n)
		return
	}
	if math.IsInf(f, 0) || math.Abs(f) >= maxByteSize {
		d.fail(path, "%s is too large", quoteShort(n.str))
		return
	}
	v.SetInt(int64(math.Round(f)))
}

// bitRate accepts "100Mbit", "1.5Gbit", "800kbit" (see model.BitRate), or
// 0. Other bare numbers are refused: bits or bytes?
func (d *decoder) bitRate(path string, n *node, v reflect.Value) {
	switch n.kind {
	case kindString:
		r, err := model.ParseBitRate(n.str)
		if err != nil {
			d.fail(path, "%v", err)
			return
		}
		v.SetInt(int64(r))
	case kindNumber:
		if f, err := strconv.ParseFloat(n.str, 64); err == nil && f == 0 && !n.nonFinite {
			v.SetInt(0)
			return
		}
		d.fail(path, "%s has no unit: write bits per second, e.g. %sMbit", n.str, n.str)
	default:
		d.want(path, "a bandwidth such as 100Mbit or 1Gbit", n)
	}
}

// duration accepts "30m", "2h", "1h30m" or a number of seconds.
func (d *decoder) duration(path string, n *node, v reflect.Value) {
	switch n.kind {
	case kindString:
		dur, err := time.ParseDuration(strings.TrimSpace(n.str))
		if err != nil {
			d.fail(path, "%s is not a duration (want e.g. 30m, 2h, 1h30m)", quoteShort(n.str))
			return
		}
		v.SetInt(int64(dur))
	case kindNumber:
		if n.nonFinite {
			d.fail(path, "want a finite duration, got %s", n.str)
			return
		}
		f, err := strconv.ParseFloat(n.str, 64)
		if err != nil && !isRangeErr(err) {
			d.want(path, "a duration such as 30m or 2h, or a number of seconds", n)
			return
		}
		ns := f * float64(time.Second)
		if math.IsInf(ns, 0) || math.Abs(ns) >= math.MaxInt64 {
			d.fail(path, "%s seconds is too long", n.str)
			return
		}
		v.SetInt(int64(ns))
	default:
		d.want(path, "a duration such as 30m or 2h, or a number of seconds", n)
	}
}

// timestamp accepts an RFC 3339 time ("2026-11-24T13:00:00Z"), kept in UTC.
func (d *decoder) timestamp(path string, n *node, v reflect.Value) {
	if n.kind != kindString {
		d.want(path, "an RFC 3339 time such as 2026-11-24T13:00:00Z", n)
		return
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(n.str))
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		d.fail(path, "%s is not an RFC 3339 time (want e.g. 2026-11-24T13:00:00Z)", quoteShort(n.str))
		return
	}
	v.Set(reflect.ValueOf(t.UTC()))
}
