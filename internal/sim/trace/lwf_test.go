package trace

import (
	"strings"
	"testing"
	"time"
	"vgrid/internal/model"
)

// lwfDoc wraps lease-request elements in a workload document.
func lwfDoc(reqs ...string) string {
	return `<?xml version="1.0"?>
<lease-workload name="t">
  <description>test</description>
  <lease-requests>
` + strings.Join(reqs, "\n") + `
  </lease-requests>
</lease-workload>
`
}

// lwfReq builds one lease-request; inner goes inside <lease> after <nodes>.
func lwfReq(arrival, attrs, inner string) string {
	return `<lease-request arrival="` + arrival + `">
  <lease ` + attrs + `>
    <nodes><node-set numnodes="2"><res type="CPU" amount="100"/><res type="Memory" amount="1024"/></node-set></nodes>
    ` + inner + `
  </lease>
</lease-request>`
}

func TestReadLWF(t *testing.T) {
	const m = time.Minute
	img := `<software><disk-image id="'foobar.img'" size="1024"/></software>`
	base := Lease{Nodes: 2, CPUs: 1, MemoryMiB: 1024, Image: "foobar.img", ImageSizeMiB: 1024}
	with := func(f func(*Lease)) Lease { l := base; f(&l); return l }
	tests := []struct {
		name    string
		in      string
		want    []Lease
		wantErr string
	}{
		{
			name: "best effort, reservation, immediate, deadline",
			in: lwfDoc(
				`<lease-request arrival="00:00:00.00"><realduration time="00:15:00.00"/>`+
					`<lease id="1" preemptible="true"><nodes><node-set numnodes="2"><res type="CPU" amount="100"/><res type="Memory" amount="1024"/></node-set></nodes>`+
					`<start/><duration time="01:00:00.00"/>`+img+`</lease></lease-request>`,
				lwfReq("00:15:00", `id="2" preemptible="false"`, `<start><exact time="00:30:00"/></start><duration time="00:30:00"/>`+img),
				lwfReq("+00:20:00", `id="3" preemptible="False"`, `<start><now/></start><duration time="600"/><software><none/></software>`),
				lwfReq("00:25", `id="4" preemptible="true"`, `<start><exact time="01:00:00"/></start><deadline time="1:00:00:00"/><duration time="00:10:00"/>`+img),
			),
			want: []Lease{
				with(func(l *Lease) {
					l.ID, l.Kind, l.Duration, l.RealDuration, l.Preemptible = "1", model.LeaseBestEffort, 60*m, 15*m, true
				}),
				with(func(l *Lease) {
					l.ID, l.Submit, l.Kind, l.Start, l.Duration = "2", 15*m, model.LeaseReservation, 30*m, 30*m
				}),
				with(func(l *Lease) {
					l.ID, l.Submit, l.Kind, l.Duration, l.Image, l.ImageSizeMiB = "3", 20*m, model.LeaseImmediate, 10*m, "", 0
				}),
				with(func(l *Lease) {
					l.ID, l.Submit, l.Kind, l.Start, l.Deadline, l.Duration, l.Preemptible = "4", 25*m, model.LeaseDeadline, 60*m, 24*time.Hour, 10*m, true
				}),
			},
		},
		{
			name: "ids by position, several node-sets, disk, realduration capped, sorted",
			in: lwfDoc(
				`<lease-request arrival="00:10:00"><realduration time="02:00:00"/><lease preemptible="true">
				<nodes>
				  <node-set numnodes="1"><res type="CPU" amount="50"/><res type="Memory" amount="512"/></node-set>
				  <node-set numnodes="3"><res type="CPU" amount="100"/><res type="CPU" amount="100"/><res type="Memory" amount="256"/><res type="Disk" amount="10"/><res type="Net-in" amount="5"/></node-set>
				</nodes><start></start><duration time="01:00:00"/></lease></lease-request>`,
				lwfReq("00:05:00", ``, `<start/><duration time="00:01:00"/>`),
			),
			want: []Lease{
				{ID: "2", Submit: 5 * m, Kind: model.LeaseBestEffort, Duration: m, Nodes: 2, CPUs: 1, MemoryMiB: 1024},
				{ID: "1", Submit: 10 * m, Kind: model.LeaseBestEffort, Duration: 60 * m, RealDuration: 60 * m, Nodes: 4, CPUs: 2, MemoryMiB: 512, DiskMiB: 10, Preemptible: true},
			},
		},
		{
			name: "negative arrival clamped to 0",
			in:   lwfDoc(lwfReq("-00:05:00", `id="a"`, `<start/><duration time="00:01:00"/>`)),
			want: []Lease{{ID: "a", Kind: model.LeaseBestEffort, Duration: m, Nodes: 2, CPUs: 1, MemoryMiB: 1024}},
		},
		{
			name: "commented-out requests and no requests",
			in:   lwfDoc(`<!-- ` + lwfReq("00:00:00", `id="1"`, `<start/><duration time="00:01:00"/>`) + ` -->`),
			want: nil,
		},
		{name: "empty input", in: "", wantErr: "read lwf: no <lease-workload> element"},
		{name: "wrong root", in: "<workload/>", wantErr: "read lwf: line 1: root element is <workload>, want <lease-workload>"},
		{name: "two roots", in: "<lease-workload/>\n<lease-workload/>", wantErr: "read lwf: line 2: second root element"},
		{name: "text after root", in: "<lease-workload/>\nhello", wantErr: "read lwf: line 2: text outside the root element"},
		{name: "syntax error", in: "<lease-workload>\n<lease-requests>\n</lease-workload>", wantErr: "read lwf: line 3: element <lease-requests> closed by </lease-workload>"},
		{name: "unclosed", in: "<lease-workload>\n<lease-requests>\n", wantErr: "read lwf: line 3: unexpected EOF"},
		{
			name:    "missing arrival",
			in:      lwfDoc(`<lease-request><lease><nodes><node-set numnodes="1"/></nodes><duration time="1"/></lease></lease-request>`),
			wantErr: "read lwf: line 5: lease-request: missing arrival attribute",
		},
		{
			name:    "bad arrival",
			in:      lwfDoc(lwfReq("1h", `id="1"`, `<duration time="00:01:00"/>`)),
			wantErr: `read lwf: line 5: lease-request: arrival: "1h" is not a time`,
		},
		{
			name:    "missing lease",
			in:      lwfDoc(`<lease-request arrival="0"/>`),
			wantErr: "read lwf: line 5: lease-request: missing <lease>",
		},
		{
			name:    "missing duration",
			in:      lwfDoc(lwfReq("0", `id="7"`, `<start/>`)),
			wantErr: "read lwf: line 5: lease-request: lease 7: missing <duration>",
		},
		{
			name:    "zero duration",
			in:      lwfDoc(lwfReq("0", `id="7"`, `<duration time="00:00:00"/>`)),
			wantErr: "read lwf: line 5: lease-request: lease 7: duration: got 0s, want more than 0",
		},
		{
			name:    "duration without time",
			in:      lwfDoc(lwfReq("0", `id="7"`, `<duration/>`)),
			wantErr: "lease 7: duration: missing time attribute",
		},
		{
			name:    "bad exact start",
			in:      lwfDoc(lwfReq("0", `id="7"`, `<start><exact time="soon"/></start><duration time="1"/>`)),
			wantErr: `lease 7: start: exact: "soon" is not a time`,
		},
		{
			name:    "bad deadline",
			in:      lwfDoc(lwfReq("0", `id="7"`, `<deadline time="1e9"/><duration time="1"/>`)),
			wantErr: `lease 7: deadline: "1e9" is not a time`,
		},
		{
			name:    "bad preemptible",
			in:      lwfDoc(lwfReq("0", `id="7" preemptible="maybe"`, `<duration time="1"/>`)),
			wantErr: `lease 7: preemptible: "maybe" is neither true nor false`,
		},
		{
			name:    "zero realduration",
			in:      lwfDoc(`<lease-request arrival="0"><realduration time="0"/><lease id="7"><nodes><node-set numnodes="1"/></nodes><duration time="1"/></lease></lease-request>`),
			wantErr: "lease 7: realduration: got 0s, want more than 0",
		},
		{
			name:    "missing nodes",
			in:      lwfDoc(`<lease-request arrival="0"><lease id="7"><duration time="1"/></lease></lease-request>`),
			wantErr: "lease 7: missing <nodes><node-set>",
		},
		{
			name:    "zero nodes",
			in:      lwfDoc(`<lease-request arrival="0"><lease id="7"><nodes><node-set numnodes="0"/></nodes><duration time="1"/></lease></lease-request>`),
			wantErr: `lease 7: node-set 1: numnodes: "0" is not a positive whole number`,
		},
		{
			name:    "bad amount",
			in:      lwfDoc(`<lease-request arrival="0"><lease id="7"><nodes><node-set numnodes="1"><res type="CPU" amount="-5"/></node-set></nodes><duration time="1"/></lease></lease-request>`),
			wantErr: `lease 7: node-set 1: res CPU: amount "-5" is not a number`,
		},
		{
			name:    "bad image size",
			in:      lwfDoc(lwfReq("0", `id="7"`, `<duration time="1"/><software><disk-image id="x" size="big"/></software>`)),
			wantErr: `lease 7: disk-image size: "big" is not a number`,
		},
		{
			name:    "duplicate id",
			in:      lwfDoc(lwfReq("0", `id="7"`, `<duration time="1"/>`), lwfReq("0", `id="7"`, `<duration time="1"/>`)),
			wantErr: `read lwf: line 11: lease id "7" already used on line 5`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadLWF(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadLWF: %v", err)
			}
			checkLeases(t, got, tt.want)
		})
	}
}

func TestLWFDuration(t *testing.T) {
	const s = time.Second
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "00:10:00.00", want: 600 * s},
		{in: "+00:10:00", want: 600 * s},
		{in: "-00:10:00", want: -600 * s},
		{in: " 01:15:00 ", want: 4500 * s},
		{in: "1:02:03:04.5", want: 86400*s + 2*3600*s + 3*60*s + 4500*time.Millisecond},
		{in: "02:30", want: 2*3600*s + 30*60*s},
		{in: "90", want: 90 * s},
		{in: "1.5", want: 1500 * time.Millisecond},
		{in: "", wantErr: true},
		{in: "+", wantErr: true},
		{in: "+-1", wantErr: true},
		{in: "1:2:3:4:5", wantErr: true},
		{in: "1::3", wantErr: true},
		{in: "1.5:00:00", wantErr: true},
		{in: "1e3", wantErr: true},
		{in: "Inf", wantErr: true},
		{in: "0x10", wantErr: true},
		{in: "1_000", wantErr: true},
		{in: "10:-5:00", wantErr: true},
		{in: "99999999999:00:00", wantErr: true},
	}
	for _, tt := range tests {
		got, err := lwfDuration(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("lwfDuration(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("lwfDuration(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}
