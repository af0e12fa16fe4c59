package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"vgrid/internal/model"

	"vgrid/internal/sim/metrics"
)

// wellFormed parses an SVG document completely and counts its elements
// by name.
func wellFormed(t *testing.T, b []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	count := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg is not well formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			count[se.Name.Local]++
		}
	}
	if count["svg"] != 1 {
		t.Fatalf("got %d svg elements, want 1", count["svg"])
	}
	return count
}

func TestUtilizationSVG(t *testing.T) {
	h := time.Hour
	tests := []struct {
		name    string
		series  []metrics.Sample
		title   string
		want    []string
		wantErr string
	}{
		{
			name:   "hours axis and mean",
			series: []metrics.Sample{{T: 0, Utilization: 0.2}, {T: h, Utilization: 0.6}, {T: 2 * h, Utilization: 1}, {T: 3 * h, Utilization: 0.2}},
			title:  "30 days <SDSC> & ARs",
			want:   []string{"30 days &lt;SDSC&gt; &amp; ARs", "mean 50.0 %", "time since trace start (hours)", "utilization (%)", ">100<"},
		},
		{
			name:   "above capacity extends the axis",
			series: []metrics.Sample{{T: 0, Utilization: 0.5}, {T: 10 * time.Minute, Utilization: 1.3}},
			want:   []string{"mean 90.0 %", "(minutes)", ">150<", `stroke="#c0392b"`},
		},
		{
			name:   "one sample",
			series: []metrics.Sample{{T: 5 * 24 * h, Utilization: 0.25}},
			want:   []string{"mean 25.0 %"},
		},
		{name: "empty", wantErr: "utilization svg: empty series"},
		{
			name:    "out of order",
			series:  []metrics.Sample{{T: h, Utilization: 0.2}, {T: h, Utilization: 0.3}},
			wantErr: "utilization svg: sample 1 at 1h0m0s is not after sample 0 at 1h0m0s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := UtilizationSVG(&b, tt.series, tt.title)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wellFormed(t, b.Bytes())
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("svg lacks %q", w)
				}
			}
		})
	}
}

func TestUtilizationSVGDownsamples(t *testing.T) {
	series := make([]metrics.Sample, 100_000)
	for i := range series {
		series[i] = metrics.Sample{T: time.Duration(i) * time.Minute, Utilization: float64(i%2) * 0.8}
	}
	var b bytes.Buffer
	if err := UtilizationSVG(&b, series, "long"); err != nil {
		t.Fatal(err)
	}
	if b.Len() > 100_000 {
		t.Errorf("got %d bytes, want at most 100000", b.Len())
	}
	for _, w := range []string{"mean 40.0 %", "(days)"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("svg lacks %q", w)
		}
	}
}

func TestGanttSVG(t *testing.T) {
	s := time.Second
	recs := []metrics.Record{
		{ID: "a", Kind: model.LeaseBestEffort, Start: 0, End: 100 * s, Nodes: 2, CPUs: 1, Hosts: []string{"h10", "h2"}},
		{ID: "b", Kind: model.LeaseReservation, Start: 50 * s, End: 150 * s, Nodes: 1, CPUs: 1, Hosts: []string{"h2"}},
		{ID: "c", Kind: model.LeaseBestEffort, Start: 0, End: 300 * s, Nodes: 1, CPUs: 1, Preemptions: 1,
			Segments: []metrics.Segment{{Host: "h1", Start: 0, End: 100 * s}, {Host: "h3", Start: 200 * s, End: 300 * s}}},
		{ID: "d", Kind: model.LeaseReservation, Rejected: true, Nodes: 1, Hosts: []string{"h1"}},
		{ID: "e", Kind: model.LeaseBestEffort, Start: 10 * s, End: 20 * s, Nodes: 1}, // no host: left out
	}
	var b bytes.Buffer
	if err := GanttSVG(&b, recs, GanttOptions{Title: "toy", Hosts: []string{"h3", "spare"}}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	count := wellFormed(t, b.Bytes())
	if got, want := count["title"], 5; got != want {
		t.Errorf("got %d tooltips, want %d", got, want)
	}
	for _, w := range []string{"best-effort", "reservation", "5 hosts, 3 leases, 5 bars", "c (best-effort) on h3: 3m20s to 5m0s, 1 nodes, 1 preemptions"} {
		if !strings.Contains(out, w) {
			t.Errorf("svg lacks %q", w)
		}
	}
	if strings.Contains(out, ">deadline<") {
		t.Error("legend shows deadline, which no record has")
	}
	// Rows: listed hosts first, then natural order.
	var rows []string
	for _, m := range regexp.MustCompile(`text-anchor="end" font-size="[0-9.]+" fill="#333">([^<]+)<`).FindAllStringSubmatch(out, -1) {
		rows = append(rows, m[1])
	}
	if want := []string{"h3", "spare", "h1", "h2", "h10"}; !slices.Equal(rows, want) {
		t.Errorf("got rows %v, want %v", rows, want)
	}
	// a and b overlap on h2: two lanes, so their bars differ in y.
	ya := regexp.MustCompile(`<rect x="[0-9.]+" y="([0-9.]+)"[^>]*><title>a \(best-effort\) on h2`).FindStringSubmatch(out)
	yb := regexp.MustCompile(`<rect x="[0-9.]+" y="([0-9.]+)"[^>]*><title>b \(reservation\) on h2`).FindStringSubmatch(out)
	if ya == nil || yb == nil || ya[1] == yb[1] {
		t.Errorf("got bars of a and b on h2 at y %v and %v, want different lanes", ya, yb)
	}

	b.Reset()
	if err := GanttSVG(&b, recs, GanttOptions{NoTooltips: true}); err != nil {
		t.Fatal(err)
	}
	if n := wellFormed(t, b.Bytes())["title"]; n != 0 {
		t.Errorf("got %d tooltips, want none", n)
	}
	b.Reset()
	if err := GanttSVG(&b, recs, GanttOptions{From: 120 * s, To: 250 * s}); err != nil {
		t.Fatal(err)
	}
	if got, want := wellFormed(t, b.Bytes())["title"], 2; got != want { // b and the second run of c
		t.Errorf("got %d bars in the window, want %d", got, want)
	}
	if err := GanttSVG(io.Discard, recs[4:], GanttOptions{}); err == nil || err.Error() != "gantt svg: no run segment has a host (in the window)" {
		t.Errorf("got error %v, want no run segment has a host", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrors(t *testing.T) {
	if err := UtilizationSVG(failWriter{}, []metrics.Sample{{T: 0, Utilization: 1}}, "x"); err == nil || err.Error() != "disk full" {
		t.Errorf("got %v, want disk full", err)
	}
	rec := []metrics.Record{{Kind: model.LeaseBestEffort, End: 10, Nodes: 1, Hosts: []string{"h"}}}
	if err := GanttSVG(failWriter{}, rec, GanttOptions{}); err == nil || err.Error() != "disk full" {
		t.Errorf("got %v, want disk full", err)
	}
}

func TestNaturalCmp(t *testing.T) {
	got := []string{"h10", "h2", "h1", "a", "h02", "h", "b1x", "b1", "h2a"}
	slices.SortFunc(got, naturalCmp)
	want := []string{"a", "b1", "b1x", "h", "h1", "h2", "h2a", "h02", "h10"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestNiceStep(t *testing.T) {
	tests := []struct{ in, want float64 }{{0.3, 0.5}, {1, 1}, {1.1, 2}, {3, 5}, {7, 10}, {42, 50}, {0, 1}, {-1, 1}}
	for _, tt := range tests {
		if got := niceStep(tt.in); got != tt.want {
			t.Errorf("niceStep(%v): got %v, want %v", tt.in, got, tt.want)
		}
	}
}
