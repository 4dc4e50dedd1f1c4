// Package registry serves a Confluent-compatible schema registry (the REST API
// of franz-go's srfake) whose registrations survive restarts: each new schema
// is appended to a JSON-lines file and replayed, with its id and version, on
// start. `weir dev` serves it; any Confluent-compatible registry can replace it.
package registry

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// entry is one line of the persistence file.
type entry struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
	Type    string `json:"type,omitempty"`
}

// Server is a schema registry persisted to a file.
type Server struct {
	reg  *srfake.Registry
	path string

	mu      sync.Mutex
	seen    map[string]bool // subject/version persisted
	servers []*http.Server
}

// Open loads the registry persisted in dir ("" keeps it in memory only).
func Open(dir string) (*Server, error) {
	s := &Server{reg: srfake.NewRegistry(), seen: map[string]bool{}}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry: create %s: %w", dir, err)
	}
	s.path = filepath.Join(dir, "schemas.jsonl")
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", s.path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<26)
	for line := 1; sc.Scan(); line++ {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("registry: %s line %d: %w (move the file away to start empty)", s.path, line, err)
		}
		if err := s.seed(e); err != nil {
			return nil, fmt.Errorf("registry: %s line %d: %w", s.path, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("registry: read %s: %w", s.path, err)
	}
	return s, nil
}

func (s *Server) seed(e entry) (err error) {
	defer func() {
		if r := recover(); r != nil { // srfake panics on a conflicting seed
			err = fmt.Errorf("seed %s v%d id %d: %v", e.Subject, e.Version, e.ID, r)
		}
	}()
	s.reg.SeedSchema(e.Subject, e.Version, e.ID, sr.Schema{Schema: e.Schema, Type: schemaType(e.Type)})
	s.seen[fmt.Sprintf("%s/%d", e.Subject, e.Version)] = true
	return nil
}

func schemaType(t string) sr.SchemaType {
	var st sr.SchemaType
	if t == "" {
		return sr.TypeAvro
	}
	if err := st.UnmarshalText([]byte(t)); err != nil {
		return sr.TypeAvro
	}
	return st
}

// Handler serves the Confluent REST API and persists new registrations.
func (s *Server) Handler() http.Handler {
	inner := s.reg.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject, isRegister := registration(r)
		if !isRegister || s.path == "" {
			inner.ServeHTTP(w, r)
			return
		}
		rec := &recorder{ResponseWriter: w}
		inner.ServeHTTP(rec, r)
		if rec.status != 0 && rec.status != http.StatusOK {
			return
		}
		if err := s.persist(subject); err != nil {
			// The client already has its answer; the registration lives on in
			// memory. Record the failure where an operator will see it.
			fmt.Fprintf(os.Stderr, "registry: persist %s: %v\n", subject, err)
		}
	})
}

// registration reports whether r registers a schema, and under which subject.
func registration(r *http.Request) (string, bool) {
	if r.Method != http.MethodPost {
		return "", false
	}
	p := strings.TrimPrefix(r.URL.Path, "/subjects/")
	if p == r.URL.Path || !strings.HasSuffix(p, "/versions") {
		return "", false
	}
	subject, err := url.PathUnescape(strings.TrimSuffix(p, "/versions"))
	if err != nil {
		return "", false
	}
	return subject, true
}

func (s *Server) persist(subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines []byte
	var keys []string
	for v := 1; ; v++ {
		ss, ok := s.reg.GetSchema(subject, v)
		if !ok {
			break
		}
		key := fmt.Sprintf("%s/%d", ss.Subject, ss.Version)
		if s.seen[key] {
			continue
		}
		b, err := json.Marshal(entry{Subject: ss.Subject, Version: ss.Version, ID: ss.ID, Schema: ss.Schema.Schema, Type: ss.Type.String()})
		if err != nil {
			return err
		}
		lines = append(append(lines, b...), '\n')
		keys = append(keys, key)
	}
	if len(lines) == 0 {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(lines); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	for _, k := range keys {
		s.seen[k] = true
	}
	return f.Close()
}

// Close stops serving: listeners and open connections close at once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, srv := range s.servers {
		errs = append(errs, srv.Close())
	}
	s.servers = nil
	return errors.Join(errs...)
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Serve serves the registry on l until l or the Server is closed.
func (s *Server) Serve(l net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
