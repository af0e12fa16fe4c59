package image

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

//go:embed guestfs
var guestFS embed.FS

// rootWait bounds how long the initrd waits for the root disk.
const (
	rootWaitTick    = 0.05 // seconds per poll (usleep 50000)
	rootWaitSeconds = 10
)

// initrdApplets are the busybox applets the initrd's /init uses.
var initrdApplets = []string{
	"cat", "echo", "insmod", "mount", "poweroff", "sh", "sleep", "switch_root", "usleep",
}

func guestFile(name string) []byte {
	b, err := guestFS.ReadFile("guestfs/" + name)
	if err != nil {
		panic(fmt.Sprintf("embedded guest file %s: %v", name, err)) // a build mistake
	}
	return b
}

// initScript renders the initrd's /init for the module load order.
func initScript(modules []string) ([]byte, error) {
	tmpl, err := template.New("init").Parse(string(guestFile("init.tmpl")))
	if err != nil {
		return nil, fmt.Errorf("parse init template: %w", err)
	}
	var b bytes.Buffer
	err = tmpl.Execute(&b, map[string]any{
		"Modules":         strings.Join(modules, " "),
		"RootWaitTicks":   int(rootWaitSeconds / rootWaitTick),
		"RootWaitSeconds": rootWaitSeconds,
	})
	if err != nil {
		return nil, fmt.Errorf("render init: %w", err)
	}
	return b.Bytes(), nil
}

// buildInitrd returns the gzip'ed newc initrd: busybox and a few applet
// links, the kernel modules (flat in /lib/modules, loaded in dependency
// order by /init) and /init itself.
func buildInitrd(busybox, modulesDir string, modules []string) ([]byte, error) {
	depFile, err := os.ReadFile(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("build initrd: %w", err)
	}
	deps, err := parseModulesDep(depFile)
	if err != nil {
		return nil, fmt.Errorf("build initrd: %w", err)
	}
	order, err := deps.loadOrder(modules)
	if err != nil {
		return nil, fmt.Errorf("build initrd: %w", err)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("build initrd: %w", err)
	}
	entries := []cpioEntry{
		dirEntry("bin", 0o755),
		dirEntry("dev", 0o755),
		// The kernel opens /dev/console for /init before devtmpfs is mounted.
		{Name: "dev/console", Mode: modeCharDev | 0o600, RdevMajor: 5, RdevMinor: 1},
		dirEntry("lib", 0o755),
		dirEntry("lib/modules", 0o755),
		dirEntry("newroot", 0o755),
		dirEntry("proc", 0o755),
		dirEntry("sys", 0o755),
		fileEntry("bin/busybox", 0o755, bb),
	}
	for _, a := range initrdApplets {
		entries = append(entries, symlinkEntry("bin/"+a, "busybox"))
	}
	names := make([]string, 0, len(order))
	for _, rel := range order {
		if !strings.HasSuffix(rel, ".ko") {
			return nil, fmt.Errorf("build initrd: module %s is compressed; busybox insmod needs plain .ko files", rel)
		}
		data, err := os.ReadFile(filepath.Join(modulesDir, rel))
		if err != nil {
			return nil, fmt.Errorf("build initrd: %w", err)
		}
		name := moduleName(rel)
		names = append(names, name)
		entries = append(entries, fileEntry("lib/modules/"+name+".ko", 0o644, data))
	}
	init, err := initScript(names)
	if err != nil {
		return nil, fmt.Errorf("build initrd: %w", err)
	}
	entries = append(entries, fileEntry("init", 0o755, init))

	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("build initrd: %w", err)
	}
	// The zero gzip header (no name, mtime 0) keeps the output reproducible.
	if err := writeNewc(zw, entries); err != nil {
		return nil, fmt.Errorf("build initrd: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("build initrd: %w", err)
	}
	return out.Bytes(), nil
}
