package registry

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/weirhq/weir/scoring/model"
)

// Blobs is the artifact store: a directory holding
// <dir>/<name>/v<version>.<ext>, addressed by file:// URIs; ext is "txt"
// for lightgbm-text and "json" for the other formats. Artifacts are
// written once (to a temporary file, then renamed) and never changed; the
// registry record's SHA-256 is what makes a changed file detectable.
type Blobs struct{ dir string }

// NewBlobs returns the store rooted at dir, creating it.
func NewBlobs(dir string) (*Blobs, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("registry: blob store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("registry: blob store: %w", err)
	}
	return &Blobs{dir: abs}, nil
}

// Dir is the store's absolute root.
func (b *Blobs) Dir() string { return b.dir }

// Path is where the artifact of name/version in format lives.
func (b *Blobs) Path(name string, version int32, format string) string {
	ext := "json"
	if format == model.FormatLightGBMText {
		ext = "txt"
	}
	return filepath.Join(b.dir, name, fmt.Sprintf("v%d.%s", version, ext))
}

// Put writes an artifact and returns its file:// URI.
func (b *Blobs) Put(name string, version int32, format string, artifact []byte) (string, error) {
	p := b.Path(name, version, format)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("registry: put artifact %s v%d: %w", name, version, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("registry: put artifact %s v%d: %w", name, version, err)
	}
	_, err = tmp.Write(artifact)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("registry: put artifact %s v%d: %w", name, version, err)
	}
	return (&url.URL{Scheme: "file", Path: p}).String(), nil
}

// Read returns the bytes at a file:// URI. Only file:// is supported.
func Read(uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("registry: artifact uri %q: %w", uri, err)
	}
	if u.Scheme != "file" || u.Path == "" || (u.Host != "" && u.Host != "localhost") {
		return nil, fmt.Errorf("registry: artifact uri %q: only file:///absolute/path is supported", uri)
	}
	b, err := os.ReadFile(u.Path)
	if err != nil {
		return nil, fmt.Errorf("registry: read artifact: %w", err)
	}
	return b, nil
}

// validName reports whether a model name is safe as a path element and in a
// record key: letters, digits, '_', '-' and '.', not starting with '.'.
func validName(name string) bool {
	if name == "" || strings.HasPrefix(name, ".") || len(name) > 200 {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
