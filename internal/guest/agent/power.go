package agent

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	inputEventSize = 24 // struct input_event on 64-bit: timeval (16), type, code, value
	evKey          = 1
)

// IsKeyEvent reports whether a raw struct input_event is a key press or
// release (EV_KEY). Any key on the "Power Button" device means power off.
func IsKeyEvent(ev []byte) bool {
	if len(ev) < inputEventSize {
		return false
	}
	return binary.LittleEndian.Uint16(ev[16:18]) == evKey
}

// powerButtons returns the /dev/input/eventN devices named "Power Button".
func powerButtons(root string) []string {
	paths, _ := filepath.Glob(filepath.Join(root, "sys/class/input/event*"))
	var devs []string
	for _, p := range paths {
		name, err := os.ReadFile(filepath.Join(p, "device/name"))
		if err != nil || strings.TrimSpace(string(name)) != "Power Button" {
			continue
		}
		devs = append(devs, filepath.Join(root, "dev/input", filepath.Base(p)))
	}
	return devs
}

// watchPowerButton reads events from dev and calls off on the first key
// event. It returns when the device cannot be read.
func watchPowerButton(dev string, off func() error) error {
	f, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("watch power button: %w", err)
	}
	defer f.Close()
	return waitKey(f, off)
}

func waitKey(r io.Reader, off func() error) error {
	ev := make([]byte, inputEventSize)
	for {
		if _, err := io.ReadFull(r, ev); err != nil {
			return fmt.Errorf("watch power button: %w", err)
		}
		if IsKeyEvent(ev) {
			return off()
		}
	}
}

// powerOff syncs, tries to remount the root read-only and powers off.
func powerOff() error {
	unix.Sync()
	_ = unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}
