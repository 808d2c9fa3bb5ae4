package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// ListeningPrefix starts the line a faas-agent prints on stdout once it
// listens, with its invocation and control addresses:
// "FAAS_AGENT_LISTENING 127.0.0.1:41234 127.0.0.1:41235".
const ListeningPrefix = "FAAS_AGENT_LISTENING "

// Labels the provider sets on its pods.
const (
	LabelPID     = "local.faasplane.dev/pid"
	LabelWorkDir = "local.faasplane.dev/work-dir"
)

// Config configures a [Provider].
type Config struct {
	// AgentPath is the faas-agent binary to run. Empty means New builds
	// it with [BuildAgent] into Dir/bin.
	AgentPath string
	// AgentArgs are extra flags passed to every agent.
	AgentArgs []string
	// RuntimeArgs are extra flags passed to the agents of one runtime,
	// after AgentArgs: e.g. {"python-exec": {"-bootstrap", "builtin:python",
	// "-bootstrap-mode", "exec"}}. The agents of runtimes "python" and
	// "node" start the shipped runtime's bootstrap without any (their
	// -bootstrap defaults to it).
	RuntimeArgs map[string][]string
	// Dir holds the pods' work directories (Dir/pods/<id>) and the nodes'
	// code caches (Dir/nodes/<node>/code-cache). Empty means a temporary
	// directory that Close removes.
	Dir string
	// Nodes are the simulated node names pods are spread over, fewest pods
	// first (default: one node, "local").
	Nodes []string
	// StartTimeout bounds an agent's start until it announces its address
	// (default 10 s).
	StartTimeout time.Duration
	// StopGrace is how long Delete and Close wait after SIGTERM, which lets
	// the agent stop its function process, before SIGKILL (default 2 s).
	StopGrace time.Duration
	// Env is added to every agent's environment (KEY=value).
	Env []string
	// Logger receives the agents' output and the provider's events (nil
	// discards).
	Logger *slog.Logger
}

// Provider is a warmpool.PodProvider whose pods are local agent processes.
// It also implements warmpool.PodWatcher. It is safe for concurrent use.
type Provider struct {
	cfg     Config
	log     *slog.Logger
	tempDir bool

	mu       sync.Mutex
	pods     map[string]*proc
	seq      int
	closed   bool
	watchers map[chan warmpool.PodEvent]struct{}
}

// proc is one agent process.
type proc struct {
	pod      warmpool.Pod
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has been reaped
	deleting bool          // set under Provider.mu before a deliberate kill
}

// New validates cfg, builds the agent when AgentPath is empty, and returns a
// provider with no pods.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	p := &Provider{cfg: cfg, log: cfg.Logger, pods: map[string]*proc{}, watchers: map[chan warmpool.PodEvent]struct{}{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if len(p.cfg.Nodes) == 0 {
		p.cfg.Nodes = []string{"local"}
	}
	for i, n := range p.cfg.Nodes {
		if n == "" || strings.ContainsAny(n, `/\`) || n == "." || n == ".." || slices.Contains(p.cfg.Nodes[:i], n) {
			return nil, fmt.Errorf("local: invalid or duplicate node name %q", n)
		}
	}
	if p.cfg.StartTimeout <= 0 {
		p.cfg.StartTimeout = 10 * time.Second
	}
	if p.cfg.StopGrace <= 0 {
		p.cfg.StopGrace = 2 * time.Second
	}
	if p.cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "faas-local-*")
		if err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		p.cfg.Dir, p.tempDir = dir, true
	}
	if p.cfg.AgentPath == "" {
		path, err := BuildAgent(ctx, filepath.Join(p.cfg.Dir, "bin"))
		if err != nil {
			p.removeTemp()
			return nil, err
		}
		p.cfg.AgentPath = path
	}
	if _, err := os.Stat(p.cfg.AgentPath); err != nil {
		p.removeTemp()
		return nil, fmt.Errorf("local: agent binary: %w", err)
	}
	return p, nil
}

func (p *Provider) removeTemp() {
	if p.tempDir {
		_ = os.RemoveAll(p.cfg.Dir)
	}
}

// Dir returns the provider's base directory.
func (p *Provider) Dir() string { return p.cfg.Dir }

// CacheDir returns the code-cache directory shared by the pods of node.
func (p *Provider) CacheDir(node string) string {
	return filepath.Join(p.cfg.Dir, "nodes", node, "code-cache")
}

// Create starts an agent for spec.Runtime and returns once it listens.
func (p *Provider) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	if spec.Runtime == "" {
		return warmpool.Pod{}, errors.New("local: create: empty runtime")
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return warmpool.Pod{}, errors.New("local: provider closed")
	}
	id := spec.Name
	if id == "" {
		p.seq++
		id = "local-" + strconv.Itoa(p.seq)
	}
	if strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		p.mu.Unlock()
		return warmpool.Pod{}, fmt.Errorf("local: create: invalid pod name %q", id)
	}
	if _, taken := p.pods[id]; taken {
		p.mu.Unlock()
		return warmpool.Pod{}, fmt.Errorf("local: create %q: %w", id, warmpool.ErrPodExists)
	}
	node := p.pickNodeLocked()
	pr := &proc{done: make(chan struct{}), pod: warmpool.Pod{ID: id, Node: node, Runtime: spec.Runtime}}
	p.pods[id] = pr // reserve the name; removed again if the start fails
	p.mu.Unlock()

	if err := p.start(ctx, pr, spec); err != nil {
		p.mu.Lock()
		delete(p.pods, id)
		p.mu.Unlock()
		return warmpool.Pod{}, fmt.Errorf("local: create %q: %w", id, err)
	}
	p.broadcast(warmpool.PodEvent{Type: warmpool.PodAdded, Pod: pr.pod.Clone()})
	return pr.pod.Clone(), nil
}

// pickNodeLocked returns the node with the fewest pods.
func (p *Provider) pickNodeLocked() string {
	count := map[string]int{}
	for _, pr := range p.pods {
		count[pr.pod.Node]++
	}
	best := p.cfg.Nodes[0]
	for _, n := range p.cfg.Nodes[1:] {
		if count[n] < count[best] {
			best = n
		}
	}
	return best
}

func (p *Provider) start(ctx context.Context, pr *proc, spec warmpool.PodSpec) error {
	work := filepath.Join(p.cfg.Dir, "pods", pr.pod.ID)
	cache := p.CacheDir(pr.pod.Node)
	for _, d := range []string{work, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// The pod's control token reaches the agent on its standard input:
	// not in its arguments (any user sees them) nor its environment.
	token := lifecycle.NewControlToken()
	args := append([]string{
		"-listen", "127.0.0.1:0",
		"-control-listen", "127.0.0.1:0",
		"-control-token-file", "-",
		"-work-dir", work,
		"-runtime", spec.Runtime,
		"-node", pr.pod.Node,
		"-code-cache-dir", cache,
		"-pod", pr.pod.ID,
	}, p.cfg.AgentArgs...)
	args = append(args, p.cfg.RuntimeArgs[spec.Runtime]...)
	cmd := exec.Command(p.cfg.AgentPath, args...)
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.Stdin = strings.NewReader(token + "\n")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.mu.Lock()
	pr.cmd = cmd
	p.mu.Unlock()
	log := p.log.With("pod", pr.pod.ID, "node", pr.pod.Node)

	addrCh := make(chan [2]string, 1)
	var outputs sync.WaitGroup
	outputs.Add(2)
	go func() {
		defer outputs.Done()
		forwardLines(stdout, log, addrCh)
	}()
	go func() {
		defer outputs.Done()
		forwardLines(stderr, log, nil)
	}()
	go p.reap(pr, &outputs, log)

	timer := time.NewTimer(p.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case addrs := <-addrCh:
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			p.kill(pr)
			return errors.New("provider closed during start")
		}
		pr.pod.Addr = addrs[0]
		pr.pod.Control = lifecycle.Control{Addr: addrs[1], Token: token}
		pr.pod.Created = time.Now()
		pr.pod.Labels = map[string]string{LabelPID: strconv.Itoa(cmd.Process.Pid), LabelWorkDir: work}
		for k, v := range spec.Labels {
			pr.pod.Labels[k] = v
		}
		p.mu.Unlock()
		log.Debug("agent started", "addr", addrs[0], "control", addrs[1], "pid", cmd.Process.Pid)
		return nil
	case <-pr.done:
		return fmt.Errorf("agent exited before listening: %v", cmd.ProcessState)
	case <-ctx.Done():
		p.kill(pr)
		return ctx.Err()
	case <-timer.C:
		p.kill(pr)
		return fmt.Errorf("agent did not announce its address within %v", p.cfg.StartTimeout)
	}
}

// forwardLines logs each line of r; the first ListeningPrefix line is sent
// on addrs instead (invocation address, control address).
func forwardLines(r io.Reader, log *slog.Logger, addrs chan<- [2]string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if addrs != nil {
			if a, ok := strings.CutPrefix(line, ListeningPrefix); ok {
				if invoke, control, ok := strings.Cut(strings.TrimSpace(a), " "); ok {
					addrs <- [2]string{invoke, control}
					addrs = nil
					continue
				}
			}
		}
		log.Info(line, "stream", "agent")
	}
	// Drain the rest so a long line never blocks the agent on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// reap waits for the process, then drops it and reports an unexpected exit.
func (p *Provider) reap(pr *proc, outputs *sync.WaitGroup, log *slog.Logger) {
	outputs.Wait() // Wait must follow the pipe readers' EOF (os/exec rule)
	err := pr.cmd.Wait()
	p.mu.Lock()
	deliberate := pr.deleting || p.closed
	registered := p.pods[pr.pod.ID] == pr
	if registered {
		delete(p.pods, pr.pod.ID)
	}
	pod := pr.pod.Clone()
	p.mu.Unlock()
	close(pr.done)
	if !deliberate {
		log.Error("agent exited unexpectedly", "err", err, "state", pr.cmd.ProcessState.String())
	}
	if registered && pod.Addr != "" {
		p.broadcast(warmpool.PodEvent{Type: warmpool.PodDeleted, Pod: pod})
	}
}

// kill stops pr's process group: SIGTERM, then SIGKILL after StopGrace. It
// returns once the process is reaped.
func (p *Provider) kill(pr *proc) {
	p.mu.Lock()
	pr.deleting = true
	p.mu.Unlock()
	pgid := pr.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(p.cfg.StopGrace)
	defer timer.Stop()
	select {
	case <-pr.done:
	case <-timer.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-pr.done
	}
	// The agent's group is gone; make sure no straggler of it survives.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// Delete stops the pod's agent and removes its work directory.
func (p *Provider) Delete(ctx context.Context, id string) error {
	p.mu.Lock()
	pr, ok := p.pods[id]
	if !ok || pr.cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("local: delete %q: %w", id, warmpool.ErrPodNotFound)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.kill(pr)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		// The kill goes on in the background and always completes.
		return ctx.Err()
	}
	return os.RemoveAll(filepath.Join(p.cfg.Dir, "pods", id))
}

// List returns the pods whose agents are running, sorted by ID.
func (p *Provider) List(context.Context) ([]warmpool.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]warmpool.Pod, 0, len(p.pods))
	for _, pr := range p.pods {
		if pr.pod.Addr != "" {
			out = append(out, pr.pod.Clone())
		}
	}
	slices.SortFunc(out, func(a, b warmpool.Pod) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Watch reports pods added and deleted (an agent that crashed is reported as
// deleted) until ctx is done or the provider closes. A watcher that falls 64
// events behind is dropped: its channel closes and it lists again.
func (p *Provider) Watch(ctx context.Context) (<-chan warmpool.PodEvent, error) {
	ch := make(chan warmpool.PodEvent, 64)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("local: provider closed")
	}
	p.watchers[ch] = struct{}{}
	p.mu.Unlock()
	context.AfterFunc(ctx, func() { p.dropWatcher(ch) })
	return ch, nil
}

func (p *Provider) dropWatcher(ch chan warmpool.PodEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.watchers[ch]; ok {
		delete(p.watchers, ch)
		close(ch)
	}
}

func (p *Provider) broadcast(ev warmpool.PodEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ch := range p.watchers {
		select {
		case ch <- ev:
		default:
			delete(p.watchers, ch)
			close(ch)
		}
	}
}

// Kill sends SIGKILL to the pod's agent alone, as a crash would; the
// provider notices the exit and reports the pod deleted. It exists for
// failure-injection tests and demos.
func (p *Provider) Kill(id string) error {
	p.mu.Lock()
	pr, ok := p.pods[id]
	p.mu.Unlock()
	if !ok || pr.cmd == nil {
		return fmt.Errorf("local: kill %q: %w", id, warmpool.ErrPodNotFound)
	}
	return pr.cmd.Process.Signal(syscall.SIGKILL)
}

// Close stops every agent, closes the watchers, and removes the base
// directory when the provider created it. It is idempotent.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	procs := make([]*proc, 0, len(p.pods))
	for _, pr := range p.pods {
		if pr.cmd != nil {
			procs = append(procs, pr)
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, pr := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.kill(pr)
		}()
	}
	wg.Wait()
	p.mu.Lock()
	for ch := range p.watchers {
		delete(p.watchers, ch)
		close(ch)
	}
	p.mu.Unlock()
	p.removeTemp()
	return nil
}
