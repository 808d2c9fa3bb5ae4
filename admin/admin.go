package admin

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	faas "github.com/faasplane/faas"
)

// Config configures the status page. The zero value is ready to use.
type Config struct {
	// Refresh is how often the HTML page reloads itself. Default 2 s;
	// negative: never.
	Refresh time.Duration
	// ColdStarts is how many recent cold starts the page lists per
	// function, and four times as many for the whole Dataplane. Default 5.
	ColdStarts int
	// MaxFunctions bounds the functions shown in full, the busiest (most
	// in flight and queued, then most requests) first; the others are
	// counted. Default 200.
	MaxFunctions int
	// Logger receives the page's errors. Default: discard.
	Logger *slog.Logger
}

// ErrInvalidConfig is wrapped by New's errors.
var ErrInvalidConfig = errors.New("admin: invalid config")

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct":   func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"ms":    func(f float64) string { return sprintf1(f) },
	"mib":   func(b int64) int64 { return b >> 20 },
	"lower": strings.ToLower,
}).Parse(pageHTML))

// handler serves the page.
type handler struct {
	dp  *faas.Dataplane
	cfg Config
	now func() time.Time
}

// New returns the status page of dp.
func New(dp *faas.Dataplane, cfg Config) (http.Handler, error) {
	if dp == nil {
		return nil, errors.New("admin: a Dataplane is required")
	}
	if cfg.ColdStarts < 0 || cfg.MaxFunctions < 0 {
		return nil, errors.Join(ErrInvalidConfig, errors.New("ColdStarts and MaxFunctions must not be negative"))
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = 2 * time.Second
	}
	if cfg.ColdStarts == 0 {
		cfg.ColdStarts = 5
	}
	if cfg.MaxFunctions == 0 {
		cfg.MaxFunctions = 200
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &handler{dp: dp, cfg: cfg, now: time.Now}, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st := h.status()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("format") == "json" || strings.HasSuffix(r.URL.Path, ".json") {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			h.cfg.Logger.Debug("writing the status", "err", err)
		}
		return
	}
	var b bytes.Buffer
	if err := page.Execute(&b, pageData{Status: st, Refresh: int(h.cfg.Refresh.Seconds())}); err != nil {
		h.cfg.Logger.Error("rendering the status page", "err", err)
		http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write(b.Bytes())
}

type pageData struct {
	Status
	Refresh int // seconds; 0 or less: none
}

// Status is the page's data (its JSON form).
type Status struct {
	Node string    `json:"node"`
	Time time.Time `json:"time"`
	// Shedding is the load shedder's state; ShedLimit its limit (0: off).
	Shedding  bool `json:"shedding"`
	ShedLimit int  `json:"shed_limit"`
	// UnknownFunction, Forwarded, Failovers: the Dataplane's counters.
	UnknownFunction uint64 `json:"unknown_function_requests"`
	Forwarded       uint64 `json:"forwarded"`
	Failovers       uint64 `json:"forward_failovers"`
	// Pools are the warm pools, by runtime; Members the pool managers this
	// node knows of.
	Pools   []Pool `json:"warm_pools"`
	Members int    `json:"pool_members"`
	// Nodes counts the instances on each node, by state.
	Nodes []Node `json:"nodes"`
	// Functions are the busiest functions, HiddenFunctions how many more
	// there are.
	Functions       []Function `json:"functions"`
	HiddenFunctions int        `json:"hidden_functions"`
	// ColdStarts are the Dataplane's last cold starts, newest first.
	ColdStarts []ColdStart     `json:"recent_cold_starts"`
	Usage      faas.UsageStats `json:"usage"`
}

// Pool is one runtime's warm pool.
type Pool struct {
	Runtime  string `json:"runtime"`
	Idle     int    `json:"idle"`
	Pending  int    `json:"pending"`
	Creating int    `json:"creating"`
	Waiting  int    `json:"waiting"`
	Target   int    `json:"target"`
	Taken    int64  `json:"taken"`
	Created  int64  `json:"created"`
	// CreateFailures and ProbeFailures count failed creations and probes.
	CreateFailures int64 `json:"create_failures"`
	ProbeFailures  int64 `json:"probe_failures"`
}

// Node counts the instances on one node.
type Node struct {
	Node      string         `json:"node"`
	Instances int            `json:"instances"`
	ByState   map[string]int `json:"by_state"`
	// Runtimes counts the instances by runtime.
	Runtimes map[string]int `json:"runtimes"`
}

// Function is one function's state.
type Function struct {
	ID          string  `json:"id"`
	Generation  uint64  `json:"generation"`
	MemoryBytes int64   `json:"memory_bytes"`
	InFlight    int     `json:"in_flight"`
	Queued      int     `json:"queued"`
	Starting    int     `json:"starting"`
	Free        int     `json:"free_slots"`
	Utilization float64 `json:"utilization"`
	Requests    uint64  `json:"requests"`
	OK          uint64  `json:"ok"`
	Shed        uint64  `json:"shed"`
	Cold        uint64  `json:"cold_requests"`
	// Errors counts failed requests by code.
	Errors    map[string]uint64 `json:"errors"`
	P50Millis float64           `json:"p50_ms"`
	P99Millis float64           `json:"p99_ms"`
	GBSeconds float64           `json:"gb_seconds"`
	// ColdStartCount and ColdStartFailed count its cold starts.
	ColdStartCount  uint64      `json:"cold_starts"`
	ColdStartFailed uint64      `json:"cold_start_failures"`
	Instances       []Instance  `json:"instances"`
	ColdStarts      []ColdStart `json:"recent_cold_starts"`
	Panicking       bool        `json:"health_panic"`
}

// Instance is one instance as the router sees it. It carries no control
// token.
type Instance struct {
	ID         string    `json:"id"`
	Node       string    `json:"node"`
	Pod        string    `json:"pod"`
	Addr       string    `json:"addr"`
	Runtime    string    `json:"runtime"`
	Generation uint64    `json:"generation"`
	State      string    `json:"state"`
	Since      time.Time `json:"since"`
	Routable   bool      `json:"routable"`
	Probing    bool      `json:"probing"`
	Unhealthy  bool      `json:"unhealthy"`
	Breaker    string    `json:"breaker"`
	Ejections  int       `json:"ejections"`
	// EjectedUntil is when the breaker's ejection ends (zero: none).
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	InFlight     int       `json:"in_flight"`
	Limit        int       `json:"limit"`
	Utilization  float64   `json:"utilization"`
}

// ColdStart is one cold start with its breakdown in milliseconds.
type ColdStart struct {
	Function    string    `json:"function"`
	Instance    string    `json:"instance"`
	Node        string    `json:"node"`
	Start       time.Time `json:"start"`
	QueueMillis float64   `json:"queue_ms"`
	TakeMillis  float64   `json:"take_ms"`
	FetchMillis float64   `json:"fetch_ms"`
	LoadMillis  float64   `json:"load_ms"`
	InitMillis  float64   `json:"init_ms"`
	TotalMillis float64   `json:"total_ms"`
	CacheHit    bool      `json:"cache_hit"`
	Error       string    `json:"error,omitempty"`
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func coldStartView(r faas.ColdStartRecord) ColdStart {
	b := r.Breakdown
	return ColdStart{Function: r.FunctionID, Instance: r.InstanceID, Node: r.Node, Start: r.Start,
		QueueMillis: millis(b.Queue), TakeMillis: millis(b.Take), FetchMillis: millis(b.Fetch),
		LoadMillis: millis(b.Load), InitMillis: millis(b.Init), TotalMillis: millis(b.Total),
		CacheHit: b.CacheHit, Error: r.Err}
}

// status reads the Dataplane.
func (h *handler) status() Status {
	s := h.dp.Stats()
	st := Status{
		Node: s.Node, Time: h.now(), Shedding: s.Shedding, ShedLimit: s.ShedLimit,
		UnknownFunction: s.UnknownFunction, Forwarded: s.Forwarded, Failovers: s.Failovers,
		Members: s.Pool.Members, Usage: s.Usage,
	}
	for rt, p := range s.Pool.Runtimes {
		st.Pools = append(st.Pools, Pool{Runtime: rt, Idle: p.Idle, Pending: p.Pending, Creating: p.Creating, Waiting: p.Waiting,
			Target: p.Target, Taken: p.Taken, Created: p.Created, CreateFailures: p.CreateFailures, ProbeFailures: p.ProbeFailures})
	}
	sort.Slice(st.Pools, func(i, j int) bool { return st.Pools[i].Runtime < st.Pools[j].Runtime })

	fns := s.Functions
	sort.SliceStable(fns, func(i, j int) bool {
		a, b := fns[i], fns[j]
		if x, y := a.InFlight+a.Queued, b.InFlight+b.Queued; x != y {
			return x > y
		}
		return a.Requests > b.Requests
	})
	if len(fns) > h.cfg.MaxFunctions {
		st.HiddenFunctions = len(fns) - h.cfg.MaxFunctions
		fns = fns[:h.cfg.MaxFunctions]
	}
	nodes := map[string]*Node{}
	for _, fs := range fns {
		f := Function{
			ID: fs.ID, Generation: fs.Generation, MemoryBytes: fs.MemoryBytes, InFlight: fs.InFlight, Queued: fs.Queued,
			Starting: fs.Starting, Free: fs.Routes.Free, Requests: fs.Requests, OK: fs.OK, Shed: fs.Shed, Cold: fs.Cold,
			Errors: map[string]uint64{}, P50Millis: millis(fs.Latency.P50), P99Millis: millis(fs.Latency.P99),
			GBSeconds: fs.Usage.GBSeconds, ColdStartCount: fs.ColdStarts.Count, ColdStartFailed: fs.ColdStarts.Failed,
			Panicking: fs.Routes.Panicking,
		}
		for c, n := range fs.Errors {
			f.Errors[string(c)] = n
		}
		capacity := 0
		for _, ri := range h.dp.Routes(fs.ID) {
			in := ri.Instance
			// Field by field: in.Control (the pod's token) stays out.
			iv := Instance{
				ID: in.ID, Node: in.Node, Pod: in.PodID, Addr: in.Addr, Runtime: in.Runtime, Generation: in.Generation,
				State: in.State().String(), Since: in.Since(), Routable: ri.Routable, Probing: ri.Probing, Unhealthy: ri.Unhealthy,
				Breaker: ri.Breaker.String(), Ejections: ri.Ejections, EjectedUntil: ri.Until, InFlight: ri.InFlight, Limit: ri.Limit,
			}
			if ri.Limit > 0 {
				iv.Utilization = float64(ri.InFlight) / float64(ri.Limit)
			}
			capacity += ri.Limit
			f.Instances = append(f.Instances, iv)
			n := nodes[in.Node]
			if n == nil {
				n = &Node{Node: in.Node, ByState: map[string]int{}, Runtimes: map[string]int{}}
				nodes[in.Node] = n
			}
			n.Instances++
			n.ByState[iv.State]++
			n.Runtimes[in.Runtime]++
		}
		if capacity > 0 {
			f.Utilization = float64(fs.InFlight) / float64(capacity)
		}
		for _, r := range h.dp.RecentColdStarts(fs.ID, h.cfg.ColdStarts) {
			f.ColdStarts = append(f.ColdStarts, coldStartView(r))
		}
		st.Functions = append(st.Functions, f)
	}
	for _, n := range nodes {
		st.Nodes = append(st.Nodes, *n)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Node < st.Nodes[j].Node })
	for _, r := range h.dp.RecentColdStarts("", 4*h.cfg.ColdStarts) {
		st.ColdStarts = append(st.ColdStarts, coldStartView(r))
	}
	return st
}

func sprintf1(f float64) string { return fmt.Sprintf("%.1f", f) }
