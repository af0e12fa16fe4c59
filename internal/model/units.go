package model

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ByteSize is a size in bytes. In JSON and YAML it is written as a string
// with a unit ("512Mi", "2Gi", "10G") or as a plain number of bytes.
type ByteSize int64

// Common sizes.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
)

var byteUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first so that "Mi" wins over "M".
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50},
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15},
	{"B", 1},
}

// ParseByteSize parses "512Mi", "2Gi", "1.5G", "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty size")
	}
	num, unit := s, ""
	for i, r := range s {
		if (r < '0' || r > '9') && r != '.' && r != '-' && r != '+' && r != 'e' && r != 'E' {
			num, unit = s[:i], s[i:]
			break
		}
		// 'e'/'E' only count as an exponent when a digit or a sign follows.
		if (r == 'e' || r == 'E') && (i+1 >= len(s) || (s[i+1] < '0' || s[i+1] > '9') && s[i+1] != '+' && s[i+1] != '-') {
			num, unit = s[:i], s[i:]
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a size (want a number with a unit such as 512Mi or 2Gi)", s)
	}
	mult := 0.0
	if unit == "" {
		mult = 1
	}
	for _, u := range byteUnits {
		if unit == u.suffix {
			mult = u.mult
			break
		}
	}
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q in %q (use B, Ki, Mi, Gi, Ti, K, M, G, T)", unit, s)
	}
	v := f * mult
	if v >= math.MaxInt64/2 || v <= math.MinInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(math.Round(v)), nil
}

// String prints the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	switch {
	case b == 0:
		return "0"
	case b%TiB == 0:
		return fmt.Sprintf("%dTi", b/TiB)
	case b%GiB == 0:
		return fmt.Sprintf("%dGi", b/GiB)
	case b%MiB == 0:
		return fmt.Sprintf("%dMi", b/MiB)
	case b%KiB == 0:
		return fmt.Sprintf("%dKi", b/KiB)
	}
	return strconv.FormatInt(int64(b), 10)
}

// MiB returns the size in whole mebibytes, rounded up.
func (b ByteSize) MiB() int64 { return (int64(b) + int64(MiB) - 1) / int64(MiB) }

// MarshalJSON writes the size as a string with a unit.
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON accepts a string with a unit or a number of bytes.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	} else {
		s = string(data)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Duration is a time.Duration written as "1h30m" in JSON and YAML.
type Duration time.Duration

// D returns the standard library value.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String prints the duration like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes "1h30m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "90m", "1h30m" or a number of seconds.
func (d *Duration) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a duration (want e.g. 30m, 2h, 1h30m)", s)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(data), 64)
	if err != nil {
		return fmt.Errorf("%s is not a duration (want e.g. \"30m\" or a number of seconds)", data)
	}
	if ns := f * 1e9; ns >= math.MaxInt64 || ns <= math.MinInt64 || math.IsNaN(f) {
		return fmt.Errorf("%s seconds is too long", data)
	}
	*d = Duration(f * 1e9)
	return nil
}

// Human prints the size for people, rounded to one decimal in the largest
// binary unit that keeps it at least 1 ("22.5Gi", "512Mi", "0").
func (b ByteSize) Human() string {
	units := []struct {
		s string
		v ByteSize
	}{{"Ti", TiB}, {"Gi", GiB}, {"Mi", MiB}, {"Ki", KiB}}
	for _, u := range units {
		if b >= u.v || -b >= u.v {
			f := float64(b) / float64(u.v)
			s := strconv.FormatFloat(f, 'f', 1, 64)
			return strings.TrimSuffix(s, ".0") + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
