package fake

import (
	"context"
	"errors"
	"strings"
	"testing"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
)

// guestProbe is the conformance suite's view into a fake guest: its boot
// ID, and lines appended to what it has on its disk.
var guestProbe = hypervisortest.GuestProbe{
	BootID: func(ctx context.Context, d hypervisor.Driver, id string) (string, error) {
		return d.(*Driver).BootID(id)
	},
	Append: func(ctx context.Context, d hypervisor.Driver, id, line string) error {
		f := d.(*Driver)
		b, err := f.ReadDisk(id)
		if err != nil {
			return err
		}
		return f.WriteDisk(id, append(b, line+"\n"...))
	},
	Lines: func(ctx context.Context, d hypervisor.Driver, id string) ([]string, error) {
		b, err := d.(*Driver).ReadDisk(id)
		return strings.Fields(string(b)), err
	},
}

// TestMigrateFaults injects the migration faults: a failed preparation
// prepares nothing; a failed migration leaves the guest at the source
// and ends the destination, which a second preparation makes again; a
// failed finish leaves the instance incoming until it succeeds.
func TestMigrateFaults(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	a, b := New(t.TempDir()), New(t.TempDir())
	defer a.Close()
	defer b.Close()
	spec := hypervisortest.Spec("mf-1", img)
	if _, err := a.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteDisk(spec.ID, []byte("data")); err != nil {
		t.Fatal(err)
	}

	b.SetFaults(Faults{PrepareIncomingErr: boom})
	if _, err := b.PrepareIncoming(ctx, spec, "127.0.0.1:0"); !errors.Is(err, boom) {
		t.Errorf("PrepareIncoming: got %v, want boom", err)
	}
	if _, err := b.Get(ctx, spec.ID); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get after a failed preparation: got %v, want ErrNotFound", err)
	}
	b.SetFaults(Faults{})
	ep, err := b.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	a.SetFaults(Faults{MigrateErr: boom})
	if _, err := a.MigrateOut(ctx, spec.ID, ep, hypervisor.MigrateOptions{}, nil); !errors.Is(err, boom) {
		t.Errorf("MigrateOut: got %v, want boom", err)
	}
	if in, err := a.Get(ctx, spec.ID); err != nil || in.State != hypervisor.InstanceRunning {
		t.Errorf("source after a failed migration: got %+v, %v, want running", in, err)
	}
	in, err := b.Get(ctx, spec.ID)
	if err != nil || in.State != hypervisor.InstanceStopped || !strings.HasPrefix(in.ExitReason, "incoming migration did not complete") {
		t.Errorf("destination after a failed migration: got %+v, %v, want stopped, incomplete", in, err)
	}
	if _, err := b.Start(ctx, spec); !errors.Is(err, hypervisor.ErrIncoming) {
		t.Errorf("Start of a destination whose guest never came: got %v, want ErrIncoming", err)
	}
	if _, err := b.FinishIncoming(ctx, spec.ID); err == nil {
		t.Error("FinishIncoming of a destination whose guest never came: got nil, want an error")
	}
	a.SetFaults(Faults{})
	ep2, err := b.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil || ep2 == ep {
		t.Fatalf("PrepareIncoming again: got %+v, %v, want a new endpoint", ep2, err)
	}
	if _, err := a.MigrateOut(ctx, spec.ID, ep, hypervisor.MigrateOptions{}, nil); err == nil {
		t.Error("MigrateOut to the old endpoint: got nil, want an error")
	}
	res, err := a.MigrateOut(ctx, spec.ID, ep2, hypervisor.MigrateOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.MigrateOut(ctx, spec.ID, ep2, hypervisor.MigrateOptions{}, nil); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("MigrateOut of a guest that left: got %v, want ErrNotRunning", err)
	}

	b.SetFaults(Faults{FinishIncomingErr: boom})
	if _, err := b.FinishIncoming(ctx, spec.ID); !errors.Is(err, boom) {
		t.Errorf("FinishIncoming: got %v, want boom", err)
	}
	if in, err := b.Get(ctx, spec.ID); err != nil || in.ExitReason != "incoming" || in.State != hypervisor.InstanceRunning {
		t.Errorf("after a failed finish: got %+v, %v, want running, still incoming", in, err)
	}
	b.SetFaults(Faults{})
	in, err = b.FinishIncoming(ctx, spec.ID)
	if err != nil || in.State != hypervisor.InstanceRunning || in.ExitReason != "" {
		t.Fatalf("FinishIncoming: got %+v, %v", in, err)
	}
	if got, err := b.ReadDisk(spec.ID); err != nil || string(got) != "data" {
		t.Errorf("disk at the destination: got %q, %v, want %q", got, err, "data")
	}
	if res.DiskBytes != 4 || res.Downtime <= 0 || res.Total < res.Downtime {
		t.Errorf("result: got %+v, want 4 disk bytes, a downtime within the total", res)
	}
}

// TestMigrateListen checks PrepareIncoming's listen address.
func TestMigrateListen(t *testing.T) {
	d := New(t.TempDir())
	defer d.Close()
	tests := []struct {
		listen string
		ok     bool
		memory string
	}{
		{"127.0.0.1:7000", true, "127.0.0.1:7000"},
		{"[::1]:7100", true, "[::1]:7100"},
		{"0.0.0.0:0", false, ""},
		{"localhost:0", false, ""},
		{"127.0.0.1", false, ""},
		{"127.0.0.1:65535", false, ""},
		{"127.0.0.1:-1", false, ""},
	}
	for i, tt := range tests {
		spec := hypervisortest.Spec("ml-"+string(rune('a'+i)), img)
		ep, err := d.PrepareIncoming(context.Background(), spec, tt.listen)
		if tt.ok != (err == nil) || (tt.ok && ep.Memory != tt.memory) {
			t.Errorf("listen %q: got %+v, %v, want ok=%v, memory %q", tt.listen, ep, err, tt.ok, tt.memory)
		}
		if !tt.ok && !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("listen %q: got %v, want ErrInvalid", tt.listen, err)
		}
	}
}
