package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strings"
)

// ErrUnsupportedScheme reports a Ref whose URI scheme no store serves.
var ErrUnsupportedScheme = errors.New("code: unsupported URI scheme")

// SchemeStore dispatches Open to a store by the scheme of Ref.URI ("file",
// "http", "https"). It is the origin behind the caches: caches look
// packages up by digest, and only a miss reaches the origin, which needs the
// URI. It is safe for concurrent use.
type SchemeStore struct {
	stores map[string]Store
}

// NewSchemeStore returns a store that serves each scheme (lower case, e.g.
// "file") with its store.
func NewSchemeStore(stores map[string]Store) (*SchemeStore, error) {
	m := make(map[string]Store, len(stores))
	for scheme, st := range stores {
		if scheme == "" || scheme != strings.ToLower(scheme) || st == nil {
			return nil, fmt.Errorf("code: scheme store: bad entry %q (schemes are lower case, stores non-nil)", scheme)
		}
		m[scheme] = st
	}
	return &SchemeStore{stores: m}, nil
}

// OriginConfig configures [NewOrigin].
type OriginConfig struct {
	// Dir, when set, serves file:// URIs of files below it. Empty
	// disables file:// URIs.
	Dir string
	// HTTP configures the store of http:// and https:// URIs.
	HTTP HTTPConfig
	// NoHTTP disables http:// and https:// URIs.
	NoHTTP bool
}

// NewOrigin returns the usual origin: a [DirStore] for file:// URIs below
// cfg.Dir and an [HTTPStore] for http:// and https://.
func NewOrigin(cfg OriginConfig) (*SchemeStore, error) {
	stores := map[string]Store{}
	if cfg.Dir != "" {
		ds, err := NewDirStore(cfg.Dir)
		if err != nil {
			return nil, err
		}
		stores["file"] = ds
	}
	if !cfg.NoHTTP {
		hs, err := NewHTTPStore(cfg.HTTP)
		if err != nil {
			return nil, err
		}
		stores["http"], stores["https"] = hs, hs
	}
	return NewSchemeStore(stores)
}

// Open opens ref with the store of its URI's scheme.
func (s *SchemeStore) Open(ctx context.Context, ref Ref) (io.ReadCloser, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	u, err := url.Parse(ref.URI)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRef, err)
	}
	st, ok := s.stores[strings.ToLower(u.Scheme)]
	if !ok {
		return nil, fmt.Errorf("%w: %q in %s", ErrUnsupportedScheme, u.Scheme, short(ref.URI))
	}
	return st.Open(ctx, ref)
}

// Close closes the stores that have a Close method, each once.
func (s *SchemeStore) Close() error {
	seen := map[any]bool{}
	var errs []error
	for _, st := range s.stores {
		c, ok := st.(io.Closer)
		if !ok {
			continue
		}
		// The same store may serve several schemes; close it once.
		if reflect.TypeOf(st).Comparable() {
			if seen[st] {
				continue
			}
			seen[st] = true
		}
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
