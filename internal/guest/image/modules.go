package image

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// DefaultModules are the kernel modules the initrd loads (with whatever
// they depend on): virtio over MMIO and PCI, the console (virtio-serial),
// network and block drivers, the memory balloon (the driver's Resize
// moves guest memory with it; the Debian cloud kernel has virtio_balloon
// as a module), the ACPI power button with evdev (for QMP
// system_powerdown) and isofs for the cidata seed. ext4 is built into the
// Debian cloud kernel.
var DefaultModules = []string{
	"virtio_ring", "virtio", "virtio_mmio",
	"virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
	"virtio_console", "failover", "net_failover", "virtio_net", "virtio_blk",
	"virtio_balloon", "button", "evdev", "isofs",
}

// moduleDeps is a parsed modules.dep: module name -> its file and the files
// it depends on (paths relative to the modules directory).
type moduleDeps map[string]moduleDep

type moduleDep struct {
	Path string
	Deps []string
}

// moduleName turns "kernel/drivers/virtio/virtio-mmio.ko.xz" into
// "virtio_mmio" (the kernel treats - and _ in module names alike).
func moduleName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// parseModulesDep parses the "path: dep dep ..." lines of modules.dep.
func parseModulesDep(b []byte) (moduleDeps, error) {
	deps := moduleDeps{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("parse modules.dep line %d: no colon", n)
		}
		deps[moduleName(file)] = moduleDep{Path: file, Deps: strings.Fields(rest)}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse modules.dep: %w", err)
	}
	return deps, nil
}

// loadOrder returns the files of want and everything they depend on, each
// module after its dependencies and otherwise in the order asked for.
func (d moduleDeps) loadOrder(want []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		}
		m, ok := d[name]
		if !ok {
			if len(chain) == 0 {
				return fmt.Errorf("module %s is not in modules.dep (built in, or a wrong name?)", name)
			}
			return fmt.Errorf("module %s (needed by %s) is not in modules.dep", name, chain[len(chain)-1])
		}
		state[name] = 1
		for _, dep := range m.Deps {
			if err := visit(moduleName(dep), append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, m.Path)
		return nil
	}
	for _, name := range want {
		if err := visit(strings.ReplaceAll(name, "-", "_"), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}
