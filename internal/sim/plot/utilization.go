package plot

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"vgrid/internal/sim/metrics"
)

// Utilization chart geometry, in pixels.
const (
	utilWidth  = 1000
	utilHeight = 380
	utilLeft   = 64
	utilRight  = 24
	utilTop    = 44
	utilBottom = 56
)

// UtilizationSVG writes series (from metrics.Series) as a filled step
// chart: each sample holds until the next, the last for as long as the one
// before it. Long series are averaged down to about one sample per pixel.
// The y axis runs from 0 to 100 % (further when the series exceeds it); a
// dashed line marks the time-weighted mean.
func UtilizationSVG(w io.Writer, series []metrics.Sample, title string) error {
	if len(series) == 0 {
		return errors.New("utilization svg: empty series")
	}
	for i := 1; i < len(series); i++ {
		if series[i].T <= series[i-1].T {
			return fmt.Errorf("utilization svg: sample %d at %v is not after sample %d at %v", i, series[i].T, i-1, series[i-1].T)
		}
	}
	// Sample i covers [starts[i], starts[i+1]).
	step := time.Second
	if len(series) > 1 {
		step = series[len(series)-1].T - series[len(series)-2].T
	}
	starts := make([]time.Duration, len(series)+1)
	vals := make([]float64, len(series))
	for i, p := range series {
		starts[i] = p.T
		vals[i] = p.Utilization
		if math.IsNaN(vals[i]) || math.IsInf(vals[i], 0) {
			vals[i] = 0
		}
	}
	starts[len(series)] = series[len(series)-1].T + step

	var total, weighted, most float64
	for i, v := range vals {
		d := float64(starts[i+1] - starts[i])
		total += d
		weighted += v * d
		most = max(most, v)
	}
	mean := weighted / total

	plotW := float64(utilWidth - utilLeft - utilRight)
	starts, vals = downsample(starts, vals, int(plotW))

	yMax := math.Max(1, most)
	ystep := niceStep(yMax / 5)
	yMax = math.Ceil(yMax/ystep-1e-9) * ystep
	x0, x1 := float64(utilLeft), float64(utilWidth-utilRight)
	yBase, yTop := float64(utilHeight-utilBottom), float64(utilTop)
	y := func(v float64) float64 { return yBase - (yBase-yTop)*math.Max(0, v)/yMax }
	ax := newTimeAxis(starts[0], starts[len(starts)-1], x0, x1)

	s := newSVG(w, utilWidth, utilHeight)
	s.text(utilWidth/2, 26, `text-anchor="middle" font-size="16" font-weight="bold" fill="#222"`, title)
	// Horizontal grid and y labels.
	for k := 0.0; k*ystep <= yMax+1e-9; k++ {
		v := k * ystep
		yy := y(v)
		s.line(x0, yy, x1, yy, `stroke="#e3e3e3" stroke-width="1"`)
		s.text(x0-8, yy+4, `text-anchor="end" fill="#333"`, fmt.Sprintf("%.0f", 100*v))
	}
	s.printf(`<text transform="translate(18 %s) rotate(-90)" text-anchor="middle" fill="#333">utilization (%%)</text>`+"\n", num((yTop+yBase)/2))
	ax.draw(s, yTop, yBase)

	// The step outline, then the same path closed down to the base.
	var line strings.Builder
	for i, v := range vals {
		xa, xb, yy := ax.x(starts[i]), ax.x(starts[i+1]), y(v)
		if i == 0 {
			fmt.Fprintf(&line, "M%s %s", num(xa), num(yy))
		} else {
			fmt.Fprintf(&line, "V%s", num(yy))
		}
		fmt.Fprintf(&line, "H%s", num(xb))
	}
	outline := line.String()
	s.printf(`<path d="%sV%sH%sZ" fill="#4e79a7" fill-opacity="0.35" stroke="none"/>`+"\n", outline, num(yBase), num(ax.x(starts[0])))
	s.printf(`<path d="%s" fill="none" stroke="#2f5d8a" stroke-width="1.2" stroke-linejoin="round"/>`+"\n", outline)
	// 100 % line when the axis goes beyond it, and the mean.
	if yMax > 1 {
		s.line(x0, y(1), x1, y(1), `stroke="#c0392b" stroke-width="1" stroke-dasharray="2 3"`)
	}
	s.line(x0, y(mean), x1, y(mean), `stroke="#e15759" stroke-width="1.5" stroke-dasharray="6 4"`)
	s.text(x1-4, y(mean)-5, `text-anchor="end" fill="#e15759" font-weight="bold" stroke="white" stroke-width="3" paint-order="stroke"`, fmt.Sprintf("mean %.1f %%", 100*mean))
	s.printf(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#444"/>`+"\n", num(x0), num(yTop), num(x1-x0), num(yBase-yTop))
	return s.close()
}

// downsample averages consecutive samples (weighted by length) so that at
// most about n remain. starts has one more element than vals.
func downsample(starts []time.Duration, vals []float64, n int) ([]time.Duration, []float64) {
	if n < 1 || len(vals) <= 2*n {
		return starts, vals
	}
	k := (len(vals) + n - 1) / n
	var outS []time.Duration
	var outV []float64
	for i := 0; i < len(vals); i += k {
		j := min(i+k, len(vals))
		var sum, d float64
		for m := i; m < j; m++ {
			dd := float64(starts[m+1] - starts[m])
			sum += vals[m] * dd
			d += dd
		}
		outS = append(outS, starts[i])
		outV = append(outV, sum/d)
	}
	return append(outS, starts[len(vals)]), outV
}
