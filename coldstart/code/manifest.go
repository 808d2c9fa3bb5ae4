package code

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ManifestName is the manifest's file name at the root of a code package.
const ManifestName = "faas.json"

// DefaultInitPath is the path of the function's init hook when the manifest
// names none; the function SDK serves it.
const DefaultInitPath = "/_faas/init"

// Protocols a manifest may name; they match the agent protocol's.
const (
	ProtocolHTTP1 = "http1"
	ProtocolH2C   = "h2c"
)

// maxManifestBytes bounds the manifest file.
const maxManifestBytes = 64 << 10

// Manifest describes how to run a code package. It is the JSON file
// faas.json at the package's root, e.g.
//
//	{"command": "./hello", "args": ["-v"], "protocol": "http1",
//	 "init_path": "/_faas/init", "env": {"GOGC": "200"}}
//
// The function process is started in the unpacked package's directory with
// PORT in its environment and must listen on 127.0.0.1:$PORT. Once it
// listens, the agent calls POST InitPath (unless NoInit) when the instance
// is initialized; any 2xx answer means success, anything else a failure that
// may be retried in the same process.
type Manifest struct {
	// Command is the program to run: a path inside the package ("./hello",
	// "bin/server"), an absolute path ("/usr/bin/python3"), or a bare name
	// found in the package first and on the agent's PATH otherwise.
	// Required, unless the load request names a command.
	Command string `json:"command"`
	// Args are the command's arguments.
	Args []string `json:"args,omitempty"`
	// Env is added to the process's environment (PORT cannot be set).
	Env map[string]string `json:"env,omitempty"`
	// Protocol is "http1" (default) or "h2c" (HTTP/2 without TLS, for
	// gRPC functions).
	Protocol string `json:"protocol,omitempty"`
	// InitPath is the init hook's path. Default "/_faas/init".
	InitPath string `json:"init_path,omitempty"`
	// NoInit says the function has no init hook: initialize succeeds
	// without calling the process.
	NoInit bool `json:"no_init,omitempty"`
	// Runtime, when set, must be the agent's runtime.
	Runtime string `json:"runtime,omitempty"`
}

// ManifestError reports the manifest field that is wrong. It matches
// ErrBadManifest and ErrBadPackage.
type ManifestError struct {
	Field  string
	Reason string
}

func (e *ManifestError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%v: %s", ErrBadManifest, e.Reason)
	}
	return fmt.Sprintf("%v: %s: %s", ErrBadManifest, e.Field, e.Reason)
}

// Unwrap returns ErrBadManifest.
func (e *ManifestError) Unwrap() error { return ErrBadManifest }

func badManifest(field, format string, args ...any) error {
	return &ManifestError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ParseManifest decodes and validates a manifest. Unknown fields are errors,
// so that a misspelt "comand" is reported instead of ignored.
func ParseManifest(data []byte) (Manifest, error) {
	if len(data) > maxManifestBytes {
		return Manifest{}, badManifest("", "larger than %d bytes", maxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, badManifest("", "malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, badManifest("", "trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// ErrNoManifest reports a package without faas.json. It matches
// ErrBadManifest; a loader that gets the command from elsewhere may accept it.
var ErrNoManifest = fmt.Errorf("%w: no %s at the package root", ErrBadManifest, ManifestName)

// ReadManifest reads and validates dir/faas.json. It does not follow a
// symlink out of dir. A missing file is ErrNoManifest.
func ReadManifest(dir string) (Manifest, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("code: manifest: %w", err)
	}
	defer root.Close()
	f, err := root.Open(ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, ErrNoManifest
	}
	if err != nil {
		return Manifest{}, badManifest("", "%v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return Manifest{}, badManifest("", "%s is not a regular file", ManifestName)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return Manifest{}, badManifest("", "reading: %v", err)
	}
	return ParseManifest(data)
}

const (
	maxManifestString = 4096
	maxManifestArgs   = 256
	maxManifestEnv    = 1024
)

// Validate checks the manifest's fields. An empty Command is valid here (a
// load request may supply it); [Manifest.Resolve] requires one.
func (m *Manifest) Validate() error {
	if m.Command != "" {
		if err := validCommand(m.Command); err != nil {
			return err
		}
	}
	if len(m.Args) > maxManifestArgs {
		return badManifest("args", "more than %d", maxManifestArgs)
	}
	for i, a := range m.Args {
		if len(a) > maxManifestString || strings.IndexByte(a, 0) >= 0 {
			return badManifest(fmt.Sprintf("args[%d]", i), "longer than %d bytes or contains NUL", maxManifestString)
		}
	}
	if err := ValidEnv(m.Env); err != nil {
		return err
	}
	switch m.Protocol {
	case "", ProtocolHTTP1, ProtocolH2C:
	default:
		return badManifest("protocol", "want %q or %q, got %q", ProtocolHTTP1, ProtocolH2C, short(m.Protocol))
	}
	if m.InitPath != "" {
		if err := validInitPath(m.InitPath); err != nil {
			return err
		}
	}
	if len(m.Runtime) > 128 {
		return badManifest("runtime", "longer than 128 bytes")
	}
	return nil
}

func validCommand(c string) error {
	if len(c) > maxManifestString || strings.ContainsAny(c, "\x00\\") {
		return badManifest("command", "longer than %d bytes or contains NUL or a backslash", maxManifestString)
	}
	if filepath.IsAbs(c) {
		return nil
	}
	for elem := range strings.SplitSeq(c, "/") {
		if elem == ".." {
			return badManifest("command", "%q leaves the package", short(c))
		}
	}
	if !filepath.IsLocal(c) {
		return badManifest("command", "%q is not a path inside the package", short(c))
	}
	return nil
}

func validInitPath(p string) error {
	if len(p) > 256 || p[0] != '/' {
		return badManifest("init_path", "must start with \"/\" and have at most 256 bytes, got %q", short(p))
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '?' || c == '#' {
			return badManifest("init_path", "byte %#02x at %d is not allowed in a path", c, i)
		}
	}
	if strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
		return badManifest("init_path", "has a \"..\" element")
	}
	return nil
}

// ValidEnv checks environment variables for a function process: at most
// 1024, names of 1 to 256 bytes without "=" or NUL, values of at most 4096
// bytes without NUL, and no PORT (the agent sets it).
func ValidEnv(env map[string]string) error {
	if len(env) > maxManifestEnv {
		return badManifest("env", "more than %d variables", maxManifestEnv)
	}
	for k, v := range env {
		if k == "" || len(k) > 256 || strings.ContainsAny(k, "=\x00") {
			return badManifest("env", "bad variable name %q", short(k))
		}
		if len(v) > maxManifestString || strings.IndexByte(v, 0) >= 0 {
			return badManifest("env", "value of %q is longer than %d bytes or contains NUL", short(k), maxManifestString)
		}
		if k == "PORT" {
			return badManifest("env", "PORT is set by the agent")
		}
	}
	return nil
}

// InitHookPath returns the init hook's path, or "" when NoInit.
func (m *Manifest) InitHookPath() string {
	switch {
	case m.NoInit:
		return ""
	case m.InitPath == "":
		return DefaultInitPath
	default:
		return m.InitPath
	}
}

// Resolve returns the executable to start for m in the unpacked package dir:
// a package-relative Command resolved inside dir (it must be a regular,
// executable file there and not lead outside through a symlink), an absolute
// one as is, and a bare name from dir when present, else from lookPath
// (exec.LookPath, or nil to refuse).
func (m *Manifest) Resolve(dir string, lookPath func(string) (string, error)) (string, error) {
	if m.Command == "" {
		return "", badManifest("command", "missing (neither the manifest nor the load request names one)")
	}
	if err := validCommand(m.Command); err != nil {
		return "", err
	}
	if filepath.IsAbs(m.Command) {
		return m.Command, nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("code: resolving command: %w", err)
	}
	defer root.Close()
	fi, err := root.Stat(m.Command)
	switch {
	case err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o100 != 0:
		return filepath.Join(dir, m.Command), nil
	case err == nil:
		return "", badManifest("command", "%q is not an executable file of the package", short(m.Command))
	case !strings.Contains(m.Command, "/") && errors.Is(err, fs.ErrNotExist) && lookPath != nil:
		p, lerr := lookPath(m.Command)
		if lerr != nil {
			return "", badManifest("command", "%q is neither in the package nor on PATH", short(m.Command))
		}
		return p, nil
	default:
		return "", badManifest("command", "%q: %v", short(m.Command), err)
	}
}
