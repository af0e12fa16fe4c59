package plot

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// svgWriter writes SVG text, remembering the first error.
type svgWriter struct {
	w   *bufio.Writer
	err error
}

func newSVG(w io.Writer, width, height float64) *svgWriter {
	s := &svgWriter{w: bufio.NewWriterSize(w, 64<<10)}
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		num(width), num(height), num(width), num(height))
	s.printf(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	return s
}

func (s *svgWriter) printf(format string, args ...any) {
	if s.err != nil {
		return
	}
	_, s.err = fmt.Fprintf(s.w, format, args...)
}

// text writes a <text> element; attrs is raw attribute text.
func (s *svgWriter) text(x, y float64, attrs, body string) {
	s.printf(`<text x="%s" y="%s" %s>%s</text>`+"\n", num(x), num(y), attrs, esc(body))
}

func (s *svgWriter) line(x1, y1, x2, y2 float64, attrs string) {
	s.printf(`<line x1="%s" y1="%s" x2="%s" y2="%s" %s/>`+"\n", num(x1), num(y1), num(x2), num(y2), attrs)
}

func (s *svgWriter) close() error {
	s.printf("</svg>\n")
	if s.err != nil {
		return s.err
	}
	return s.w.Flush()
}

// num formats a coordinate with at most two decimals and no trailing
// zeros, to keep files small.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "0"
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// timeAxis maps trace time onto pixels and labels it.
type timeAxis struct {
	lo, hi time.Duration
	x0, x1 float64 // pixel range
	unit   time.Duration
	name   string
}

func newTimeAxis(lo, hi time.Duration, x0, x1 float64) timeAxis {
	if hi <= lo {
		hi = lo + time.Second
	}
	a := timeAxis{lo: lo, hi: hi, x0: x0, x1: x1}
	switch span := hi - lo; {
	case span <= 3*time.Hour:
		a.unit, a.name = time.Minute, "minutes"
	case span <= 4*24*time.Hour:
		a.unit, a.name = time.Hour, "hours"
	default:
		a.unit, a.name = 24*time.Hour, "days"
	}
	return a
}

func (a timeAxis) x(t time.Duration) float64 {
	return a.x0 + (a.x1-a.x0)*float64(t-a.lo)/float64(a.hi-a.lo)
}

// draw writes ticks, labels and vertical grid lines from yTop to yAxis,
// and the axis title below.
func (a timeAxis) draw(s *svgWriter, yTop, yAxis float64) {
	lo, hi := float64(a.lo)/float64(a.unit), float64(a.hi)/float64(a.unit)
	step := niceStep((hi - lo) / 8)
	for k := math.Ceil(lo/step - 1e-9); k*step <= hi+1e-9*step; k++ {
		v := k*step + 0 // + 0 turns -0 into 0
		x := a.x(time.Duration(v * float64(a.unit)))
		s.line(x, yTop, x, yAxis, `stroke="#e3e3e3" stroke-width="1"`)
		s.line(x, yAxis, x, yAxis+5, `stroke="#444"`)
		s.text(x, yAxis+18, `text-anchor="middle" fill="#333"`, strconv.FormatFloat(v, 'f', -1, 64))
	}
	s.line(a.x0, yAxis, a.x1, yAxis, `stroke="#444"`)
	s.text((a.x0+a.x1)/2, yAxis+36, `text-anchor="middle" fill="#333"`, "time since trace start ("+a.name+")")
}

// niceStep rounds a rough tick interval up to 1, 2 or 5 times a power of
// ten.
func niceStep(rough float64) float64 {
	if !(rough > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(rough)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= rough {
			return m * p
		}
	}
	return 10 * p
}
