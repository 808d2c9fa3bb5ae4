package local

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// AgentPackage is the import path of the agent binary BuildAgent builds.
const AgentPackage = "github.com/faasplane/faas/cmd/faas-agent"

// BuildAgent builds the faas-agent binary into dir (created if missing) with
// the go command on PATH and returns its path. The build runs in the current
// module, so a program that imports faasplane builds the agent of the same
// version; the go command's build cache makes repeated builds fast. Calls
// with the same dir must not run concurrently.
func BuildAgent(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("local: build agent: %w", err)
	}
	out := filepath.Join(dir, "faas-agent")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, AgentPackage)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("local: go build %s: %w\n%s", AgentPackage, err, stderr.Bytes())
	}
	return out, nil
}
