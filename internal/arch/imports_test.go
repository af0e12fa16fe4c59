package arch

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"vgrid/internal/testenv"
)

// rule says which imports a package's non-test files may not have.
type rule struct {
	pkg    string // directory under the module root
	forbid func(imp string) bool
	why    string
}

var rules = []rule{
	{"internal/calendar", func(imp string) bool {
		return strings.HasPrefix(imp, "vgrid/") && imp != "vgrid/internal/model" || impure(imp)
	}, "the calendar is pure: the model and the standard library's pure parts only"},
	{"internal/model", func(imp string) bool { return strings.HasPrefix(imp, "vgrid/") || impure(imp) },
		"the model is plain types"},
	{"internal/server", func(imp string) bool {
		return imp == "vgrid/internal/calendar" || strings.HasPrefix(imp, "vgrid/internal/store/")
	}, "the HTTP layer holds no calendar logic and no store backend: it calls internal/control"},
	{"internal/control", func(imp string) bool {
		return imp == "net/http" || imp == "vgrid/internal/server" || strings.HasPrefix(imp, "vgrid/internal/store/")
	}, "the core speaks no HTTP and uses the store through its interface"},
	{"internal/gridplan", func(imp string) bool {
		return strings.HasPrefix(imp, "vgrid/") && imp != "vgrid/internal/calendar" && imp != "vgrid/internal/model" && imp != "vgrid/api" || impure(imp)
	}, "planning is pure, as the calendar is: the server and the simulator run the same code"},
	{"internal/sim", func(imp string) bool {
		return imp == "vgrid/internal/control" || imp == "vgrid/internal/server" || strings.HasPrefix(imp, "vgrid/internal/store")
	}, "the simulator runs the calendar alone"},
}

// impure are packages that do I/O, read the clock or start goroutines'
// worth of machinery.
func impure(imp string) bool {
	switch imp {
	case "net/netip": // address values only: no sockets, no I/O
		return false
	case "os", "os/exec", "net", "net/http", "io/ioutil", "syscall", "context", "log", "log/slog", "sync", "unsafe":
		return true
	}
	return strings.HasPrefix(imp, "net/") || strings.HasPrefix(imp, "os/")
}

func TestImportRules(t *testing.T) {
	root := testenv.ModuleRoot(t)
	checked := 0
	for _, r := range rules {
		dir := filepath.Join(root, r.pkg)
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			// Sub-packages of a ruled package follow their own rules,
			// except the calendar's and the model's (none exist).
			if filepath.Dir(path) != dir {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked++
			for _, is := range f.Imports {
				imp, _ := strconv.Unquote(is.Path.Value)
				if r.forbid(imp) {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s imports %s: %s", rel, imp, r.why)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 30 {
		t.Fatalf("checked only %d files: the rules' directories moved?", checked)
	}
	if _, err := os.Stat(filepath.Join(root, "internal/sched")); err == nil {
		t.Errorf("internal/sched is back: placement is the calendar's")
	}
}
