package gridspec

import (
	"bytes"
	"fmt"

	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// Export writes a grid as YAML that Parse reads back, without values, to
// the same grid: params with the values the grid was made with, no
// reference left (the values are written in place, so the file
// re-applies identically; other values change only params), and every
// literal "${" of the grid's text escaped as "$${". It fails if the result is larger than
// MaxSize.
func Export(g model.GridSpec) ([]byte, error) {
	out, err := spec.ExportGrid(g)
	if err != nil {
		return nil, err
	}
	out = bytes.ReplaceAll(out, []byte("${"), []byte("$${"))
	if len(out) > MaxSize {
		return nil, fmt.Errorf("export grid: %d bytes, more than the %d a grid file may have", len(out), MaxSize)
	}
	return out, nil
}
