package trace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// TracesEnv names the environment variable that says where the shared
// workload traces are.
const TracesEnv = "VGRID_TRACES"

// Dir returns the directory of the shared workload traces (the SWF files
// of the Parallel Workloads Archive, Haizea's LWF files) the way every
// benchmark and test finds them: $VGRID_TRACES when set (it must be a
// directory), else the first shared/traces directory found walking up
// from the working directory, which finds ../shared/traces beside the
// module root from anywhere inside it.
func Dir() (string, error) {
	if d := os.Getenv(TracesEnv); d != "" {
		fi, err := os.Stat(d)
		if err != nil {
			return "", fmt.Errorf("%s=%s: %w", TracesEnv, d, err)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("%s=%s: not a directory", TracesEnv, d)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find traces: %w", err)
	}
	return findUp(wd)
}

// findUp looks for shared/traces in dir and each of its parents.
func findUp(dir string) (string, error) {
	for d := dir; ; {
		p := filepath.Join(d, "shared", "traces")
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("no shared/traces directory above " + dir + " (set " + TracesEnv + ")")
		}
		d = parent
	}
}
