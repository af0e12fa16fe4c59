package trace

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// maxSeconds bounds every time value a trace may hold: 100 years, well
// inside time.Duration's 292.
const maxSeconds = 100 * 365 * 24 * 3600

// maxCount bounds node, processor and size counts.
const maxCount = 1 << 40

var errNotNumber = errors.New("not a number")

// parseNum parses a decimal number: an integer (the common case, parsed
// without allocating) or anything strconv.ParseFloat accepts that is finite.
func parseNum(b []byte) (float64, error) {
	i, neg := 0, false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		i = 1
	}
	if i < len(b) && len(b)-i <= 15 {
		var v int64
		j := i
		for ; j < len(b); j++ {
			c := b[j]
			if c < '0' || c > '9' {
				break
			}
			v = v*10 + int64(c-'0')
		}
		if j == len(b) {
			if neg {
				v = -v
			}
			return float64(v), nil
		}
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errNotNumber
	}
	return f, nil
}

// seconds converts a number of seconds to a duration, rejecting values
// beyond maxSeconds.
func seconds(v float64) (time.Duration, error) {
	if v > maxSeconds || v < -maxSeconds {
		return 0, errors.New("out of range")
	}
	return time.Duration(math.Round(v * float64(time.Second))), nil
}

// count converts a non-negative whole number below maxCount to int64.
func count(v float64) (int64, error) {
	if v != math.Trunc(v) {
		return 0, errors.New("not a whole number")
	}
	if v < 0 || v > maxCount {
		return 0, errors.New("out of range")
	}
	return int64(v), nil
}

// unquote strips one pair of surrounding single or double quotes, which
// Haizea's files put around image names ('NONE.img').
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
