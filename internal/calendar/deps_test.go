package calendar

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPure keeps the calendar pure: only the standard library's
// side-effect-free packages and the model, no wall clock, no goroutines.
func TestPure(t *testing.T) {
	forbidden := map[string]bool{
		"os": true, "os/exec": true, "os/signal": true, "io/ioutil": true, "io/fs": true,
		"net": true, "net/http": true, "syscall": true, "context": true, "log": true,
		"log/slog": true, "math/rand": true, "math/rand/v2": true, "crypto/rand": true,
		"sync": true, "sync/atomic": true, "runtime": true, "unsafe": true, "time/tzdata": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		n++
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(strings.SplitN(p, "/", 2)[0], ".") || strings.HasPrefix(p, "vgrid/") && p != "vgrid/internal/model" {
				t.Errorf("%s imports %s: the calendar may import only the standard library and vgrid/internal/model", f, p)
			}
			if forbidden[p] {
				t.Errorf("%s imports %s: the calendar does no I/O, keeps no goroutines and draws no random numbers", f, p)
			}
		}
		ast.Inspect(af, func(node ast.Node) bool {
			switch x := node.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: go statement at %s: the calendar starts no goroutines", f, fset.Position(x.Pos()))
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && id.Name == "time" && (x.Sel.Name == "Now" || x.Sel.Name == "Since" || x.Sel.Name == "Until" || x.Sel.Name == "Sleep" || x.Sel.Name == "After" || x.Sel.Name == "NewTimer" || x.Sel.Name == "NewTicker" || x.Sel.Name == "Tick" || x.Sel.Name == "AfterFunc") {
					t.Errorf("%s: time.%s at %s: now is an input", f, x.Sel.Name, fset.Position(x.Pos()))
				}
			}
			return true
		})
	}
	if n == 0 {
		t.Fatal("no source files")
	}
}
