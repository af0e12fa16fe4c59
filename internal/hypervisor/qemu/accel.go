package qemu

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// DetectAccel decides between KVM and TCG on this host. KVM is chosen only
// when /dev/kvm exists, a hardware KVM module (kvm_intel or kvm_amd) is
// loaded and the CPU has the vmx or svm flag: a /dev/kvm backed by another
// module (kvm_pvm on this project's hosts) cannot run ordinary guest
// kernels. reason says why TCG was chosen ("" for KVM).
func DetectAccel() (accel, reason string) { return detectAccel("/") }

func detectAccel(root string) (string, string) {
	p := func(s string) string { return filepath.Join(root, s) }
	if _, err := os.Stat(p("dev/kvm")); err != nil {
		return AccelTCG, "no /dev/kvm: using TCG"
	}
	hw := ""
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat(p("sys/module/" + m)); err == nil {
			hw = m
		}
	}
	flag := cpuFlag(p("proc/cpuinfo"))
	switch {
	case hw == "" && flag == "":
		other := "no kvm_intel or kvm_amd module"
		if mods, _ := filepath.Glob(p("sys/module/kvm_*")); len(mods) > 0 {
			var names []string
			for _, m := range mods {
				names = append(names, filepath.Base(m))
			}
			other = strings.Join(names, ", ") + " host module"
		}
		return AccelTCG, other + ", no hardware virtualization: using TCG"
	case hw == "":
		return AccelTCG, "cpu has " + flag + " but no kvm_intel or kvm_amd module is loaded: using TCG"
	case flag == "":
		return AccelTCG, hw + " loaded but the cpu has no vmx/svm flag: using TCG"
	}
	return AccelKVM, ""
}

// cpuFlag returns "vmx" or "svm" if the first CPU in cpuinfo has it.
func cpuFlag(cpuinfo string) string {
	f, err := os.Open(cpuinfo)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, fl := range strings.Fields(v) {
			if fl == "vmx" || fl == "svm" {
				return fl
			}
		}
		return ""
	}
	return ""
}

// TSCkHz returns the host's TSC frequency in kHz, from the "cpu MHz" line
// of /proc/cpuinfo. Guests under TCG get it as tsc_early_khz=: without
// it their kernel sometimes cannot calibrate the TSC and hangs at boot.
func TSCkHz() (int64, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, fmt.Errorf("read tsc frequency: %w", err)
	}
	defer f.Close()
	return parseTSCkHz(f)
}

func parseTSCkHz(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 || math.IsInf(mhz, 0) {
			return 0, fmt.Errorf("read tsc frequency: bad cpu MHz %q", strings.TrimSpace(v))
		}
		return int64(math.Round(mhz * 1000)), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read tsc frequency: %w", err)
	}
	return 0, fmt.Errorf("read tsc frequency: no cpu MHz line in cpuinfo")
}
