package spec

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"vgrid/internal/model"
)

// ImageLookup reports whether an image exists and, when it does not, the
// names that do (for the error message).
type ImageLookup func(name string) (known bool, names []string)

// Limits that Validate enforces.
const (
	MaxVCPUs       = 64
	MinCPU         = 0.01 // cores
	MinMemory      = 64 * model.MiB
	MaxMemory      = 1 * model.TiB
	MinDisk        = 64 * model.MiB
	MaxDisk        = 16 * model.TiB
	MaxDiskIOPS    = 1_000_000
	MaxDiskBPS     = 100 * model.GiB // per second
	MaxDuration    = 366 * 24 * time.Hour
	MaxUserData    = 64 * 1024 // bytes
	MaxSSHKeys     = 32
	MaxSSHKeyLen   = 16 * 1024 // bytes, one key line
	MaxEnv         = 64
	MaxEnvValueLen = 4096 // bytes
	MaxImageName   = 128
	MinBandwidth   = 1 * model.Mbit
	MaxBandwidth   = 100 * model.Gbit
)

var (
	dnsLabel  = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	imageName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	envName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	sshType   = regexp.MustCompile(`^(ssh-ed25519|ssh-rsa|ecdsa-sha2-[a-z0-9]+|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)$`)
)

// Validate checks a spec against vgrid's rules and returns nil or a
// *FieldErrors listing every problem. With a nil images it does not check
// that the image exists.
func Validate(s model.WorkspaceSpec, images ImageLookup) error {
	errs := &FieldErrors{}
	validateName(errs, s.Name)
	validateImage(errs, s.Image, images)
	validateQuantum(errs, s.Quantum)
	validateDuration(errs, s.Duration)
	if s.Context != nil {
		validateContext(errs, s.Context)
	}
	if s.Lease != nil {
		validateLease(errs, s.Lease)
	}
	validateVolumes(errs, "volumes", s.Volumes, nil)
	return errs.orNil()
}

func validateName(errs *FieldErrors, name string) {
	switch {
	case name == "":
		errs.add("name", "required")
	case dnsLabel.MatchString(name):
	case strings.HasSuffix(name, "-") && dnsLabel.MatchString(strings.TrimRight(name, "-")+"x") && len(name) <= 63:
		errs.add("name", "must not end with '-'")
	default:
		errs.add("name", "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter")
	}
}

func validateImage(errs *FieldErrors, image string, images ImageLookup) {
	switch {
	case image == "":
		errs.add("image", "required")
		return
	case len(image) > MaxImageName || !imageName.MatchString(image):
		errs.add("image", fmt.Sprintf("%s is not an image name (letters, digits, '.', '_' and '-', at most %d)", quoteShort(image), MaxImageName))
		return
	}
	if images == nil {
		return
	}
	if known, names := images(image); !known {
		names = append([]string(nil), names...)
		sort.Strings(names)
		list := "none"
		if len(names) > 0 {
			list = strings.Join(names, ", ")
		}
		errs.add("image", fmt.Sprintf("unknown image %q (known: %s)", image, list))
	}
}

// ValidateQuantum checks a quantum alone (as a resize gives it), with the
// same field paths as Validate; nil when it is valid.
func ValidateQuantum(q model.Quantum) error {
	var errs FieldErrors
	validateQuantum(&errs, q)
	return errs.orNil()
}

func validateQuantum(errs *FieldErrors, q model.Quantum) {
	vcpusOK := q.VCPUs >= 1 && q.VCPUs <= MaxVCPUs
	switch {
	case q.VCPUs == 0:
		errs.add("quantum.vcpus", fmt.Sprintf("required (1 to %d)", MaxVCPUs))
	case !vcpusOK:
		errs.add("quantum.vcpus", fmt.Sprintf("must be between 1 and %d, got %d", MaxVCPUs, q.VCPUs))
	}

	switch cpu := q.CPU; {
	case math.IsNaN(cpu) || math.IsInf(cpu, 0):
		errs.add("quantum.cpu", fmt.Sprintf("must be a finite number, got %v", cpu))
	case cpu < 0:
		errs.add("quantum.cpu", fmt.Sprintf("must not be negative, got %g", cpu))
	case cpu == 0: // defaults to vcpus
	case cpu < MinCPU:
		errs.add("quantum.cpu", fmt.Sprintf("must be at least %g cores (or 0 for vcpus), got %g", MinCPU, cpu))
	case vcpusOK && cpu > float64(q.VCPUs):
		errs.add("quantum.cpu", fmt.Sprintf("%g cores exceeds vcpus (%d)", cpu, q.VCPUs))
	}

	switch m := q.Memory; {
	case m == 0:
		errs.add("quantum.memory", fmt.Sprintf("required (%v to %v)", MinMemory, MaxMemory))
	case m < 0:
		errs.add("quantum.memory", fmt.Sprintf("must not be negative, got %v", m))
	case m < MinMemory:
		errs.add("quantum.memory", fmt.Sprintf("must be at least %v, got %v", MinMemory, m))
	case m > MaxMemory:
		errs.add("quantum.memory", fmt.Sprintf("must be at most %v, got %v", MaxMemory, m))
	}

	switch dsk := q.Disk; {
	case dsk == 0: // the image's size
	case dsk < 0:
		errs.add("quantum.disk", fmt.Sprintf("must not be negative, got %v", dsk))
	case dsk < MinDisk:
		errs.add("quantum.disk", fmt.Sprintf("must be at least %v (or 0 for the image's size), got %v", MinDisk, dsk))
	case dsk > MaxDisk:
		errs.add("quantum.disk", fmt.Sprintf("must be at most %v, got %v", MaxDisk, dsk))
	}

	switch {
	case q.DiskIOPS < 0:
		errs.add("quantum.disk_iops", fmt.Sprintf("must not be negative, got %d", q.DiskIOPS))
	case q.DiskIOPS > MaxDiskIOPS:
		errs.add("quantum.disk_iops", fmt.Sprintf("must be at most %d, got %d", MaxDiskIOPS, q.DiskIOPS))
	}
	switch {
	case q.DiskBPS < 0:
		errs.add("quantum.disk_bps", fmt.Sprintf("must not be negative, got %v", q.DiskBPS))
	case q.DiskBPS > MaxDiskBPS:
		errs.add("quantum.disk_bps", fmt.Sprintf("must be at most %v per second, got %v", MaxDiskBPS, q.DiskBPS))
	}
	switch mm := q.MaxMemory; {
	case mm == 0: // memory
	case mm < 0:
		errs.add("quantum.max_memory", fmt.Sprintf("must not be negative, got %v", mm))
	case mm > MaxMemory:
		errs.add("quantum.max_memory", fmt.Sprintf("must be at most %v, got %v", MaxMemory, mm))
	case q.Memory > 0 && mm < q.Memory:
		errs.add("quantum.max_memory", fmt.Sprintf("must be at least memory (%v), got %v", q.Memory, mm))
	}
	switch bw := q.Bandwidth; {
	case bw == 0: // no cap
	case bw < 0:
		errs.add("quantum.bandwidth", fmt.Sprintf("must not be negative, got %v", bw))
	case bw < MinBandwidth:
		errs.add("quantum.bandwidth", fmt.Sprintf("must be at least %v (or 0 for no cap), got %v", MinBandwidth, bw))
	case bw > MaxBandwidth:
		errs.add("quantum.bandwidth", fmt.Sprintf("must be at most %v, got %v", MaxBandwidth, bw))
	}
}

func validateDuration(errs *FieldErrors, d model.Duration) {
	switch {
	case d == 0:
		errs.add("duration", "required (e.g. 30m, 2h, 1h30m)")
	case d < 0:
		errs.add("duration", fmt.Sprintf("must be positive, got %v", d))
	case d.D() > MaxDuration:
		errs.add("duration", fmt.Sprintf("must be at most 366 days (%v), got %v", MaxDuration, d))
	}
}

func validateContext(errs *FieldErrors, c *model.Context) {
	if c.Cluster != nil {
		errs.add("context.cluster", "is set by vgrid for the members of a cluster (their roster); a spec may not set it")
	}
	switch {
	case len(c.UserData) > MaxUserData:
		errs.add("context.user_data", fmt.Sprintf("is %d bytes, at most %d allowed", len(c.UserData), MaxUserData))
	case !utf8.ValidString(c.UserData):
		errs.add("context.user_data", "must be valid UTF-8 text")
	}

	if len(c.SSHKeys) > MaxSSHKeys {
		errs.add("context.ssh_keys", fmt.Sprintf("at most %d keys allowed, got %d", MaxSSHKeys, len(c.SSHKeys)))
	} else {
		for i, k := range c.SSHKeys {
			if reason := checkSSHKey(k); reason != "" {
				errs.add(fmt.Sprintf("context.ssh_keys[%d]", i), reason)
			}
		}
	}

	if len(c.Env) > MaxEnv {
		errs.add("context.env", fmt.Sprintf("at most %d entries allowed, got %d", MaxEnv, len(c.Env)))
	} else {
		keys := make([]string, 0, len(c.Env))
		for k := range c.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			field := FieldPath("context.env", k)
			v := c.Env[k]
			switch {
			case !envName.MatchString(k):
				errs.add(field, "name must be letters, digits and '_', not starting with a digit")
			case len(v) > MaxEnvValueLen:
				errs.add(field, fmt.Sprintf("value is %d bytes, at most %d allowed", len(v), MaxEnvValueLen))
			case !utf8.ValidString(v) || strings.ContainsRune(v, 0):
				errs.add(field, "value must be UTF-8 text without NUL bytes")
			}
		}
	}

	if c.Hostname != "" && !hostLabel.MatchString(c.Hostname) {
		errs.add("context.hostname", "must be 1-63 characters of letters, digits and '-', not starting or ending with '-'")
	}
}

// checkSSHKey checks that k looks like one line of authorized_keys without
// options: "<type> <base64 blob> [comment]", where the blob starts with the
// same type name. It returns a reason, or "" if the key looks right.
func checkSSHKey(k string) string {
	const want = `does not look like an SSH public key (want e.g. "ssh-ed25519 AAAA... user@host")`
	if len(k) > MaxSSHKeyLen {
		return fmt.Sprintf("is %d bytes, at most %d allowed", len(k), MaxSSHKeyLen)
	}
	if strings.ContainsAny(k, "\r\n\x00") || !utf8.ValidString(k) {
		return "must be a single line of text"
	}
	fields := strings.Fields(k)
	if len(fields) < 2 || !sshType.MatchString(fields[0]) {
		return want
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil || len(blob) < 4 {
		return want
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n) > uint64(len(blob)-4) || string(blob[4:4+n]) != fields[0] {
		return fmt.Sprintf("key data does not match its type %q", fields[0])
	}
	if len(blob) == int(4+n) {
		return "key data is truncated"
	}
	return ""
}

// validateLease checks the lease's shape. Whether a start is in the past or
// a deadline leaves room for the duration depends on the clock and the
// grid: the calendar answers that at admission.
func validateLease(errs *FieldErrors, l *model.LeaseSpec) {
	kind := l.Kind
	switch kind {
	case "":
		kind = model.LeaseImmediate
	case model.LeaseImmediate, model.LeaseBestEffort, model.LeaseReservation, model.LeaseDeadline:
	default:
		errs.add("lease.kind", fmt.Sprintf("unknown kind %s (want immediate, best-effort, reservation or deadline)", quoteShort(string(l.Kind))))
		return
	}
	switch {
	case kind == model.LeaseReservation && l.Start.IsZero():
		errs.add("lease.start", "required for a reservation")
	case kind != model.LeaseReservation && !l.Start.IsZero():
		errs.add("lease.start", fmt.Sprintf("only a reservation has a start, not a lease of kind %s", kind))
	}
	switch {
	case kind == model.LeaseDeadline && l.Deadline.IsZero():
		errs.add("lease.deadline", "required for a deadline lease")
	case kind != model.LeaseDeadline && !l.Deadline.IsZero():
		errs.add("lease.deadline", fmt.Sprintf("only a deadline lease has a deadline, not a lease of kind %s", kind))
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"lease.start", l.Start}, {"lease.deadline", l.Deadline}} {
		if !f.t.IsZero() && !model.LeaseTimeOK(f.t) {
			errs.add(f.name, fmt.Sprintf("%s is outside %d..%d", f.t.UTC().Format(time.RFC3339), model.MinLeaseTime.Year(), model.MaxLeaseTime.Year()))
		}
	}
	if l.Preemptible != nil && *l.Preemptible && kind != model.LeaseBestEffort {
		errs.add("lease.preemptible", fmt.Sprintf("only best-effort leases can be preempted, not a lease of kind %s", kind))
	}
}
