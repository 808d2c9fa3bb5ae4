package faas

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExamplesUseOnlyThePublicAPI: what an example shows, a user can
// write; none may import a package of the module's internal/ tree (nor a
// contrib module's).
func TestExamplesUseOnlyThePublicAPI(t *testing.T) {
	var roots []string
	for _, pattern := range []string{"examples", "contrib/*/examples"} {
		m, err := filepath.Glob(pattern)
		require.NoError(t, err)
		roots = append(roots, m...)
	}
	require.NotEmpty(t, roots)
	files := 0
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") {
				return err
			}
			files++
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if strings.HasPrefix(path, "github.com/faasplane/faas") && strings.Contains("/"+path+"/", "/internal/") {
					t.Errorf("%s imports %s", p, path)
				}
			}
			return nil
		})
		require.NoError(t, err)
	}
	require.Positive(t, files)
}
