package trace

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"vgrid/internal/model"
)

// The LWF 1.0 elements this reader understands. Unknown elements and
// attributes are ignored, as Haizea ignores them.
type (
	lwfRequest struct {
		Arrival      *string   `xml:"arrival,attr"`
		RealDuration *lwfTime  `xml:"realduration"`
		Lease        *lwfLease `xml:"lease"`
	}
	lwfLease struct {
		ID          string    `xml:"id,attr"`
		Preemptible string    `xml:"preemptible,attr"`
		Nodes       *lwfNodes `xml:"nodes"`
		Start       *lwfStart `xml:"start"`
		Duration    *lwfTime  `xml:"duration"`
		Deadline    *lwfTime  `xml:"deadline"`
		// RealDuration is accepted here too, although Haizea writes it as
		// a child of lease-request.
		RealDuration *lwfTime     `xml:"realduration"`
		Software     *lwfSoftware `xml:"software"`
	}
	lwfNodes struct {
		Sets []lwfNodeSet `xml:"node-set"`
	}
	lwfNodeSet struct {
		NumNodes *string `xml:"numnodes,attr"`
		Res      []struct {
			Type   string `xml:"type,attr"`
			Amount string `xml:"amount,attr"`
		} `xml:"res"`
	}
	lwfStart struct {
		Exact *lwfTime  `xml:"exact"`
		Now   *struct{} `xml:"now"`
	}
	lwfTime struct {
		Time *string `xml:"time,attr"`
	}
	lwfSite struct {
		Types *struct {
			Names *string `xml:"names,attr"`
		} `xml:"resource-types"`
		Nodes *lwfNodes `xml:"nodes"`
	}
	lwfSoftware struct {
		Image *struct {
			ID   string `xml:"id,attr"`
			Size string `xml:"size,attr"`
		} `xml:"disk-image"`
		None *struct{} `xml:"none"`
	}
)

// ReadLWF reads a Haizea LWF 1.0 lease workload: a <lease-workload> root
// whose <lease-requests> hold <lease-request arrival="..."> elements, each
// with one <lease>. The lease kind follows Haizea: an empty <start> is
// best-effort, <start><now/></start> immediate, <start><exact time=.../>
// a reservation; a <deadline time=.../> makes it a deadline lease (with the
// exact start, if any, as its earliest start). Resources are per node:
// CPU amount 100 is one core, Memory and Disk are MiB. When a lease has
// several node-sets their node counts add up and each resource is the
// largest any set asks for. Leases without an id get their position
// (1, 2, ...); ids must be unique. Times are [+|-][D:]HH:MM[:SS[.ff]] or a
// plain number of seconds, all offsets from the trace start.
func ReadLWF(r io.Reader) ([]Lease, error) {
	w, err := ReadLWFWorkload(r)
	return w.Leases, err
}

// ReadLWFWorkload reads an LWF 1.0 file as ReadLWF does, and its <site>
// too when it has one (see Site).
func ReadLWFWorkload(r io.Reader) (Workload, error) {
	var site *Site
	d := xml.NewDecoder(r)
	d.Strict = true
	var (
		leases []Lease
		stack  []string // open element names
		seen   = map[string]int{}
		root   bool
	)
	for {
		line, _ := d.InputPos()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Workload{}, fmt.Errorf("read lwf: %w", xmlErr(err, line))
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			if len(stack) == 0 {
				if root {
					return Workload{}, fmt.Errorf("read lwf: line %d: second root element <%s>", line, name)
				}
				if name != "lease-workload" {
					return Workload{}, fmt.Errorf("read lwf: line %d: root element is <%s>, want <lease-workload>", line, name)
				}
				root = true
			}
			if name == "site" && len(stack) == 1 {
				if site != nil {
					return Workload{}, fmt.Errorf("read lwf: line %d: a second <site>", line)
				}
				var x lwfSite
				if err := d.DecodeElement(&x, &t); err != nil {
					return Workload{}, fmt.Errorf("read lwf: %w", xmlErr(err, line))
				}
				s, err := x.site()
				if err != nil {
					return Workload{}, fmt.Errorf("read lwf: line %d: site: %w", line, err)
				}
				site = &s
				continue
			}
			if name == "lease-request" && len(stack) == 2 && stack[1] == "lease-requests" {
				var req lwfRequest
				if err := d.DecodeElement(&req, &t); err != nil {
					return Workload{}, fmt.Errorf("read lwf: %w", xmlErr(err, line))
				}
				l, err := req.lease(len(leases) + 1)
				if err != nil {
					return Workload{}, fmt.Errorf("read lwf: line %d: lease-request: %w", line, err)
				}
				if prev, dup := seen[l.ID]; dup {
					return Workload{}, fmt.Errorf("read lwf: line %d: lease id %q already used on line %d", line, l.ID, prev)
				}
				seen[l.ID] = line
				leases = append(leases, l)
				continue
			}
			stack = append(stack, name)
		case xml.EndElement:
			stack = stack[:len(stack)-1] // the strict decoder checks nesting
		case xml.CharData:
			if len(stack) == 0 {
				if text := bytes.TrimLeft(t, " \t\r\n\ufeff"); len(text) > 0 {
					line += bytes.Count(t[:len(t)-len(text)], []byte("\n"))
					return Workload{}, fmt.Errorf("read lwf: line %d: text outside the root element", line)
				}
			}
		}
	}
	if !root {
		return Workload{}, errors.New("read lwf: no <lease-workload> element")
	}
	sortBySubmit(leases)
	return Workload{Leases: leases, Site: site}, nil
}

// xmlErr makes decoder errors name a line: syntax errors carry their own,
// others get the line of the token being read.
func xmlErr(err error, line int) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("line %d: %s", se.Line, se.Msg)
	}
	return fmt.Errorf("line %d: %w", line, err)
}

func (req *lwfRequest) lease(pos int) (Lease, error) {
	var l Lease
	if req.Arrival == nil {
		return l, errors.New("missing arrival attribute")
	}
	submit, err := lwfDuration(*req.Arrival)
	if err != nil {
		return l, fmt.Errorf("arrival: %w", err)
	}
	l.Submit = max(submit, 0)
	x := req.Lease
	if x == nil {
		return l, errors.New("missing <lease>")
	}
	l.ID = strings.TrimSpace(x.ID)
	if l.ID == "" {
		l.ID = strconv.Itoa(pos)
	}
	switch strings.ToLower(strings.TrimSpace(x.Preemptible)) {
	case "true", "yes", "1":
		l.Preemptible = true
	case "false", "no", "0", "":
	default:
		return l, fmt.Errorf("lease %s: preemptible: %q is neither true nor false", l.ID, x.Preemptible)
	}
	if err := x.resources(&l); err != nil {
		return l, fmt.Errorf("lease %s: %w", l.ID, err)
	}
	l.Kind = model.LeaseBestEffort
	if x.Start != nil {
		switch {
		case x.Start.Exact != nil:
			if l.Start, err = x.Start.Exact.get(); err != nil {
				return l, fmt.Errorf("lease %s: start: exact: %w", l.ID, err)
			}
			l.Kind = model.LeaseReservation
		case x.Start.Now != nil:
			l.Kind = model.LeaseImmediate
		}
	}
	if x.Deadline != nil {
		if l.Deadline, err = x.Deadline.get(); err != nil {
			return l, fmt.Errorf("lease %s: deadline: %w", l.ID, err)
		}
		l.Kind = model.LeaseDeadline
	}
	if x.Duration == nil {
		return l, fmt.Errorf("lease %s: missing <duration>", l.ID)
	}
	if l.Duration, err = x.Duration.get(); err != nil {
		return l, fmt.Errorf("lease %s: duration: %w", l.ID, err)
	}
	if l.Duration <= 0 {
		return l, fmt.Errorf("lease %s: duration: got %v, want more than 0", l.ID, l.Duration)
	}
	rd := req.RealDuration
	if rd == nil {
		rd = x.RealDuration
	}
	if rd != nil {
		if l.RealDuration, err = rd.get(); err != nil {
			return l, fmt.Errorf("lease %s: realduration: %w", l.ID, err)
		}
		if l.RealDuration <= 0 {
			return l, fmt.Errorf("lease %s: realduration: got %v, want more than 0", l.ID, l.RealDuration)
		}
		l.RealDuration = min(l.RealDuration, l.Duration)
	}
	if sw := x.Software; sw != nil && sw.Image != nil {
		l.Image = unquote(strings.TrimSpace(sw.Image.ID))
		if s := strings.TrimSpace(sw.Image.Size); s != "" {
			if l.ImageSizeMiB, err = lwfCount(s); err != nil {
				return l, fmt.Errorf("lease %s: disk-image size: %w", l.ID, err)
			}
		}
	}
	return l, nil
}

// resources fills Nodes, CPUs, MemoryMiB and DiskMiB from <nodes>.
func (x *lwfLease) resources(l *Lease) error {
	if x.Nodes == nil || len(x.Nodes.Sets) == 0 {
		return errors.New("missing <nodes><node-set>")
	}
	var nodes int64
	for i, set := range x.Nodes.Sets {
		if set.NumNodes == nil {
			return fmt.Errorf("node-set %d: missing numnodes", i+1)
		}
		n, err := lwfCount(*set.NumNodes)
		if err != nil || n == 0 {
			return fmt.Errorf("node-set %d: numnodes: %q is not a positive whole number", i+1, *set.NumNodes)
		}
		nodes += n
		if nodes > math.MaxInt32 {
			return fmt.Errorf("node-set %d: numnodes: more than %d nodes in all", i+1, math.MaxInt32)
		}
		var cpu float64
		var mem, disk int64
		for _, res := range set.Res {
			a, err := parseNum([]byte(strings.TrimSpace(res.Amount)))
			if err != nil || a < 0 || a > maxCount {
				return fmt.Errorf("node-set %d: res %s: amount %q is not a number from 0 to %d", i+1, res.Type, res.Amount, int64(maxCount))
			}
			// A repeated type is one more instance of it (Haizea's
			// multi-instance resources): the amounts add up.
			switch strings.ToLower(res.Type) {
			case "cpu":
				cpu += a / 100
			case "memory":
				mem += int64(math.Ceil(a))
			case "disk":
				disk += int64(math.Ceil(a))
			}
		}
		l.CPUs = max(l.CPUs, cpu)
		l.MemoryMiB = max(l.MemoryMiB, mem)
		l.DiskMiB = max(l.DiskMiB, disk)
	}
	l.Nodes = int(nodes)
	return nil
}

func (t *lwfTime) get() (time.Duration, error) {
	if t.Time == nil {
		return 0, errors.New("missing time attribute")
	}
	return lwfDuration(*t.Time)
}

func lwfCount(s string) (int64, error) {
	v, err := parseNum([]byte(strings.TrimSpace(s)))
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := count(v)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return n, nil
}

// lwfDuration parses an LWF time: an optional sign, then either a number
// of seconds or [D:]HH:MM[:SS[.ff]] (the mx.DateTime delta syntax Haizea
// reads), for example "01:15:00.00", "+00:10:00" or "1:00:00:00".
func lwfDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	neg := false
	if t != "" && (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-'
		t = t[1:]
	}
	bad := fmt.Errorf("%q is not a time ([D:]HH:MM[:SS[.ff]] or seconds)", s)
	if t == "" || t[0] == '+' || t[0] == '-' {
		return 0, bad
	}
	parts := strings.Split(t, ":")
	var secs float64
	switch len(parts) {
	case 1:
		v, err := strconv.ParseFloat(t, 64)
		if err != nil || !isPlainDecimal(t) {
			return 0, bad
		}
		secs = v
	case 2, 3, 4:
		// Units of each part, counted from the right: seconds only when
		// there are three or four parts ("HH:MM" has none).
		units := []float64{86400, 3600, 60, 1}
		if len(parts) == 2 {
			units = units[1:3]
		} else {
			units = units[4-len(parts):]
		}
		for i, p := range parts {
			last := i == len(parts)-1 && len(parts) > 2
			if p == "" || !isPlainDecimal(p) || (!last && strings.Contains(p, ".")) {
				return 0, bad
			}
			v, err := strconv.ParseFloat(p, 64)
			if err != nil {
				return 0, bad
			}
			secs += v * units[i]
		}
	default:
		return 0, bad
	}
	if neg {
		secs = -secs
	}
	d, err := seconds(secs)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return d, nil
}

// isPlainDecimal reports whether s is digits with at most one '.', so that
// ParseFloat's other syntaxes (exponents, hex, Inf, underscores) are not
// accepted as times.
func isPlainDecimal(s string) bool {
	dot, digits := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}
