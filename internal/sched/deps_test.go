package sched

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPureImports keeps the scheduler pure: the standard library's
// side-effect-free packages and the model only.
func TestPureImports(t *testing.T) {
	forbidden := []string{"os", "net", "net/http", "io/ioutil", "os/exec", "syscall", "context", "log", "log/slog", "math/rand", "sync"}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(fset, f, src, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(p, ".") || (strings.HasPrefix(p, "vgrid/") && p != "vgrid/internal/model") {
				t.Errorf("%s imports %s: sched may import only the standard library and vgrid/internal/model", f, p)
			}
			for _, bad := range forbidden {
				if p == bad {
					t.Errorf("%s imports %s: sched must do no I/O and keep no goroutines", f, p)
				}
			}
		}
		if strings.Contains(string(src), "time.Now(") {
			t.Errorf("%s calls time.Now: now is an input", f)
		}
	}
}
