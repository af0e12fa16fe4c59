package main

import (
	"strings"
	"testing"
	"time"

	guestagent "vgrid/internal/guest/agent"
)

const goodLine = `{"mode":"randread","direct":true,"bs":4096,"ops":1000,"bytes":4096000,"seconds":2,"iops":500,"mb_per_s":2.048,"mean_us":2000,"p50_us":1500,"p99_us":4000,"max_us":9000}`

func TestParseResult(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		mode    string
		wantErr string // "" for none
	}{
		{"good", goodLine + "\n", "randread", ""},
		{"surrounding blanks", "\n  " + goodLine + "  \n\n", "randread", ""},
		{"nothing", "", "randread", "printed nothing"},
		{"other mode", goodLine, "randwrite", "asked for"},
		{"two lines", goodLine + "\n" + goodLine, "randread", "one JSON line"},
		{"two values", goodLine + " {}", "randread", "more than one"},
		{"unknown field", strings.Replace(goodLine, `"bs"`, `"block"`, 1), "randread", "unknown field"},
		{"not JSON", "iobench: --file: no such file", "randread", "iobench output"},
		{"no ops", strings.Replace(goodLine, `"ops":1000`, `"ops":0`, 1), "randread", "ops 0"},
		{"negative latency", strings.Replace(goodLine, `"p99_us":4000`, `"p99_us":-1`, 1), "randread", "p99_us"},
		{"zero seconds", strings.Replace(goodLine, `"seconds":2`, `"seconds":0`, 1), "randread", "seconds 0"},
		{"too long", `{"mode":"randread","x":"` + strings.Repeat("a", maxResultLine) + `"}`, "randread", "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseResult(tc.out, tc.mode)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseResult = %+v, %v; want an error about %q", r, err, tc.wantErr)
				}
				return
			}
			want := guestagent.IOBenchResult{Mode: "randread", Direct: true, BS: 4096, Ops: 1000, Bytes: 4096000, Seconds: 2, IOPS: 500,
				MBps: 2.048, MeanUs: 2000, P50us: 1500, P99us: 4000, MaxUs: 9000}
			if err != nil || r != want {
				t.Fatalf("parseResult = %+v, %v; want %+v", r, err, want)
			}
		})
	}
}

// FuzzParseResult: the guest's output never panics the parser, and what
// it accepts is a result of the mode asked for with sane numbers.
func FuzzParseResult(f *testing.F) {
	f.Add(goodLine, "randread")
	f.Add(`{"mode":"seqwrite","bs":1048576,"ops":64,"bytes":67108864,"seconds":1.5,"iops":42.6,"mb_per_s":44.7,"p50_us":100,"p99_us":900,"max_us":1000}`, "seqwrite")
	f.Add(`{"mode":"randread","seconds":1e999}`, "randread")
	f.Add("", "seqread")
	f.Fuzz(func(t *testing.T, out, mode string) {
		r, err := parseResult(out, mode)
		if err != nil {
			return
		}
		if r.Mode != mode || r.Ops <= 0 || r.Bytes <= 0 || r.Seconds <= 0 || r.IOPS < 0 || r.P99us < 0 {
			t.Fatalf("accepted %q as %+v", out, r)
		}
	})
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		want [3]float64
	}{
		{"empty", nil, [3]float64{}},
		{"one", []float64{3}, [3]float64{3, 3, 3}},
		{"odd, unsorted", []float64{5, 1, 3}, [3]float64{1, 3, 5}},
		{"even: mean of the middle two", []float64{4, 1, 2, 10}, [3]float64{1, 3, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := spread(tc.xs); got != tc.want {
				t.Errorf("spread(%v) = %v, want %v", tc.xs, got, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1GiB", 1 << 30, false},
		{"64MiB", 64 << 20, false},
		{"64Mi", 64 << 20, false},
		{"1048576", 1 << 20, false},
		{"0", 0, true},
		{"lots", 0, true},
	} {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// The runs the harness asks the guest for parse back in the guest agent
// as the same runs: the subcommand and the harness agree on the flags.
func TestRunsParseInTheGuestAgent(t *testing.T) {
	for _, b := range []guestagent.IOBench{
		seqRun("/vol/bench.dat", guestagent.IOSeqWrite, 64<<20),
		seqRun("/root/bench.dat", guestagent.IOSeqRead, 64<<20),
		randRun("/vol/bench.dat", guestagent.IORandRead, 64<<20, 5*time.Second),
		randRun("/root/bench.dat", guestagent.IORandWrite, 64<<20, 5*time.Second),
	} {
		args := b.Args()
		if args[0] != guestagent.IOBenchCommand {
			t.Fatalf("args %q do not start with the subcommand", args)
		}
		got, err := guestagent.ParseIOBenchArgs(args[1:])
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		want := b
		if want.Duration == 0 {
			want.Duration = 0 // Args passes it as "0s"
		}
		if got != want {
			t.Errorf("%q parsed as %+v, want %+v", args, got, want)
		}
	}
}
