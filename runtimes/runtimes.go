// Package runtimes ships faasplane's language runtimes, Python and
// Node.js: the bootstrap programs that a warm pod of runtime "python" or
// "node" runs before any function is known, and into which the agent then
// hot-loads one function. The programs are embedded in this package, so
// the faas-agent binary carries them: [Builtin] names one, and
// [Runtime.Install] writes it into a directory and returns the command
// that starts it, for agent.Config.Bootstrap. The package imports nothing
// of the project.
//
// A bootstrap speaks the runtime protocol of RUNTIMES.md: the agent starts
// it with PORT and two pipes (FAAS_CONTROL_FD, FAAS_EVENT_FD); it binds the
// port and says "ready"; a load message names the function's code
// directory, its entry ("app.py:handler", "index.js:handler") and its
// environment; the bootstrap imports or requires the entry, says "loaded"
// (or "load_failed") and serves invocations and the init hook over
// HTTP/1.1 until SIGTERM. Both runtimes use only what their language ships
// with (Python 3.9 or later, Node.js 18 or later) and give functions the
// same contract: a handler from request to response (status, headers,
// body, or a stream of chunks), an optional init that the init hook calls
// once, errors mapped to the X-Faas-Error-* headers, structured logs that
// carry the request ID, and a graceful stop.
//
// Package conformance (runtimes/conformance) checks any runtime against the
// protocol; both shipped runtimes pass it.
package runtimes

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed python/bootstrap.py python/faas.py node/bootstrap.js node/lib/faas.js
var files embed.FS

// Runtime is one of the shipped runtimes.
type Runtime struct {
	// Name is the runtime's name, the pods' runtime ("python", "node").
	Name string
	// Interpreter is the program that runs the bootstrap, found on PATH
	// unless the environment variable InterpreterEnv names it.
	Interpreter    string
	InterpreterEnv string
	// MinVersion is the oldest interpreter version the runtime supports
	// ("3.9", "18").
	MinVersion string

	dir  string   // in files
	main string   // the bootstrap, relative to dir
	args []string // before the bootstrap's path
	// version prints the interpreter's real path and its version on two
	// lines.
	version []string
	env     func(dir string) []string
}

var builtins = []Runtime{
	{
		Name: "python", Interpreter: "python3", InterpreterEnv: "FAAS_PYTHON", MinVersion: "3.9",
		dir: "python", main: "bootstrap.py", args: []string{"-u"},
		version: []string{"-c", "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"},
		env: func(string) []string {
			// Unbuffered output lines reach the agent as they are written;
			// no .pyc files in the function's code directory.
			return []string{"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"}
		},
	},
	{
		Name: "node", Interpreter: "node", InterpreterEnv: "FAAS_NODE", MinVersion: "18",
		dir: "node", main: "bootstrap.js",
		version: []string{"-e", "console.log(process.execPath); console.log(process.versions.node)"},
		env: func(dir string) []string {
			// require('faas') finds the runtime's SDK.
			return []string{"NODE_PATH=" + filepath.Join(dir, "lib")}
		},
	},
}

// Names returns the names of the shipped runtimes, sorted.
func Names() []string {
	out := make([]string, len(builtins))
	for i, r := range builtins {
		out[i] = r.Name
	}
	slices.Sort(out)
	return out
}

// Builtin returns the shipped runtime name.
func Builtin(name string) (Runtime, bool) {
	for _, r := range builtins {
		if r.Name == name {
			return r, true
		}
	}
	return Runtime{}, false
}

// Command is how to start an installed bootstrap: the fields of
// agent.Bootstrap.
type Command struct {
	// Path is the interpreter's real path.
	Path string
	// Args are its arguments, the bootstrap's path last.
	Args []string
	// Env is added to the bootstrap's environment.
	Env []string
}

// ErrInterpreter is matched by the error of Install when the runtime's
// interpreter is missing or too old.
var ErrInterpreter = errors.New("runtimes: interpreter missing or too old")

// Files returns the runtime's files: their paths relative to the
// installation directory, and their contents.
func (r Runtime) Files() map[string][]byte {
	out := map[string][]byte{}
	_ = fs.WalkDir(files, r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(p, r.dir+"/")] = b
		return nil
	})
	return out
}

// Install writes the runtime's files into dir (created if missing,
// readable by every user so that a function running as another user can
// run them), checks its interpreter, and returns the bootstrap that starts
// it. The interpreter is resolved to its real path (a version manager's
// shim on PATH would otherwise cost a process per start) and must be at
// least MinVersion; ErrInterpreter says what is wrong otherwise. Calls
// with the same dir must not run concurrently.
func (r Runtime) Install(ctx context.Context, dir string) (Command, error) {
	if r.dir == "" {
		return Command{}, fmt.Errorf("runtimes: %q is not a shipped runtime", r.Name)
	}
	interp, err := r.interpreter(ctx)
	if err != nil {
		return Command{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Command{}, fmt.Errorf("runtimes: %w", err)
	}
	for name, body := range r.Files() {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return Command{}, fmt.Errorf("runtimes: %w", err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return Command{}, fmt.Errorf("runtimes: %w", err)
		}
	}
	return Command{
		Path: interp,
		Args: append(slices.Clone(r.args), filepath.Join(dir, path.Base(r.main))),
		Env:  r.env(dir),
	}, nil
}

// interpreter finds the interpreter and checks its version.
func (r Runtime) interpreter(ctx context.Context) (string, error) {
	name := r.Interpreter
	if v := os.Getenv(r.InterpreterEnv); v != "" {
		name = v
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: runtime %s needs %s %s or later: %v (set $%s to use another)",
			ErrInterpreter, r.Name, r.Interpreter, r.MinVersion, err, r.InterpreterEnv)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, r.version...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: runtime %s: running %s: %v %s", ErrInterpreter, r.Name, p, err, bytes.TrimSpace(stderr.Bytes()))
	}
	lines := strings.Fields(string(out))
	if len(lines) != 2 {
		return "", fmt.Errorf("%w: runtime %s: %s printed %q", ErrInterpreter, r.Name, p, out)
	}
	if !atLeast(lines[1], r.MinVersion) {
		return "", fmt.Errorf("%w: runtime %s needs %s %s or later, %s is %s", ErrInterpreter, r.Name, r.Interpreter, r.MinVersion, p, lines[1])
	}
	return lines[0], nil
}

// atLeast compares dotted versions numerically ("3.11" ≥ "3.9").
func atLeast(have, want string) bool {
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i := range w {
		if i >= len(h) {
			return false
		}
		hv, err1 := strconv.Atoi(h[i])
		wv, err2 := strconv.Atoi(w[i])
		if err1 != nil || err2 != nil {
			return false
		}
		if hv != wv {
			return hv > wv
		}
	}
	return true
}
