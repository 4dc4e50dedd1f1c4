package registry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/blob/s3blob"

	"github.com/weirhq/weir/scoring/model"
)

// Blobs is the artifact store: a gocloud.dev/blob bucket holding
// <name>/v<version>.<ext> (ext "txt" for lightgbm-text, "json" for the
// other formats). Its URL picks the bucket:
//
//   - a directory path, or file:///absolute/dir (the default,
//     <data_dir>/models): artifact URIs are file:///absolute/dir/<key>;
//   - s3://bucket?region=...: Amazon S3 or an S3-compatible store
//     (gocloud's s3blob URL options: endpoint=, use_path_style=true, ...;
//     credentials from the AWS SDK's usual chain). Artifact URIs are
//     s3://bucket/<key>?<the same options>;
//   - mem://: in this process only (tests).
//
// Artifacts are written once (atomically: the driver writes then commits)
// and never changed; the registry record's SHA-256 is what makes a changed
// artifact detectable.
type Blobs struct {
	u      *url.URL // the bucket's URL, path cleared for non-file schemes
	dir    string   // file: the absolute root
	bucket *blob.Bucket
}

// urlMux opens the schemes Blobs and Read understand; built per call so
// that nothing is registered globally by this package.
func urlMux() *blob.URLMux {
	m := new(blob.URLMux)
	m.RegisterBucket(fileblob.Scheme, &fileblob.URLOpener{})
	m.RegisterBucket(memblob.Scheme, &memblob.URLOpener{})
	m.RegisterBucket(s3blob.Scheme, new(s3blob.URLOpener))
	return m
}

// NewBlobs returns the directory store rooted at dir, creating it.
func NewBlobs(dir string) (*Blobs, error) {
	return OpenBlobs(context.Background(), dir)
}

// OpenBlobs opens the store at a URL or directory path (see Blobs).
// Close it when done.
func OpenBlobs(ctx context.Context, where string) (*Blobs, error) {
	fail := func(err error) (*Blobs, error) { return nil, fmt.Errorf("registry: blob store %s: %w", where, err) }
	u, err := url.Parse(where)
	if err != nil || u.Scheme == "" || len(u.Scheme) == 1 { // no scheme (or a Windows drive): a directory
		u = &url.URL{Scheme: fileblob.Scheme, Path: where}
	}
	b := &Blobs{u: u}
	if u.Scheme == fileblob.Scheme {
		if u.Host != "" && u.Host != "localhost" {
			return fail(errors.New("file URLs must be file:///absolute/dir"))
		}
		abs, err := filepath.Abs(u.Path)
		if err != nil {
			return fail(err)
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return fail(err)
		}
		if b.bucket, err = fileblob.OpenBucket(abs, &fileblob.Options{Metadata: fileblob.MetadataDontWrite}); err != nil {
			return fail(err)
		}
		b.dir, b.u = abs, &url.URL{Scheme: fileblob.Scheme, Path: abs}
		return b, nil
	}
	if u.Path != "" && u.Path != "/" {
		return fail(errors.New("give a bucket, not a path in it (s3://bucket?region=...)"))
	}
	u.Path = ""
	if b.bucket, err = urlMux().OpenBucket(ctx, u.String()); err != nil {
		return fail(err)
	}
	return b, nil
}

// Close releases the bucket.
func (b *Blobs) Close() error { return b.bucket.Close() }

// Dir is a directory store's absolute root; "" for other stores.
func (b *Blobs) Dir() string { return b.dir }

// key is where the artifact of name/version in format lives in the bucket.
func key(name string, version int32, format string) string {
	ext := "json"
	if format == model.FormatLightGBMText {
		ext = "txt"
	}
	return fmt.Sprintf("%s/v%d.%s", name, version, ext)
}

// Path is where a directory store keeps the artifact of name/version in
// format.
func (b *Blobs) Path(name string, version int32, format string) string {
	return filepath.Join(b.dir, filepath.FromSlash(key(name, version, format)))
}

// uri is the artifact URI of a key.
func (b *Blobs) uri(k string) string {
	u := *b.u
	if u.Scheme == fileblob.Scheme {
		u.Path = filepath.ToSlash(filepath.Join(b.dir, filepath.FromSlash(k)))
	} else {
		u.Path = "/" + k
	}
	return u.String()
}

// Put writes an artifact and returns its URI.
func (b *Blobs) Put(name string, version int32, format string, artifact []byte) (string, error) {
	k := key(name, version, format)
	if err := b.bucket.WriteAll(context.Background(), k, artifact, nil); err != nil {
		return "", fmt.Errorf("registry: put artifact %s v%d: %w", name, version, err)
	}
	return b.uri(k), nil
}

// Read returns the bytes at an artifact URI of this store, or of any store
// as the package's Read does.
func (b *Blobs) Read(ctx context.Context, uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err == nil && u.Scheme != fileblob.Scheme && u.Scheme == b.u.Scheme && u.Host == b.u.Host && u.RawQuery == b.u.RawQuery {
		data, err := b.bucket.ReadAll(ctx, strings.TrimPrefix(u.Path, "/"))
		if err != nil {
			return nil, fmt.Errorf("registry: read artifact %s: %w", uri, err)
		}
		return data, nil
	}
	return read(ctx, uri)
}

// Read returns the bytes at an artifact URI: file:///absolute/path, or
// s3://bucket/key?options (the bucket is opened for the call).
func Read(uri string) ([]byte, error) { return read(context.Background(), uri) }

// readTimeout bounds one artifact read from a remote store.
const readTimeout = time.Minute

func read(ctx context.Context, uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("registry: artifact uri %q: %w", uri, err)
	}
	switch u.Scheme {
	case fileblob.Scheme:
		if u.Path == "" || (u.Host != "" && u.Host != "localhost") {
			return nil, fmt.Errorf("registry: artifact uri %q: want file:///absolute/path", uri)
		}
		b, err := os.ReadFile(u.Path)
		if err != nil {
			return nil, fmt.Errorf("registry: read artifact: %w", err)
		}
		return b, nil
	case s3blob.Scheme:
		k := strings.TrimPrefix(u.Path, "/")
		if u.Host == "" || k == "" {
			return nil, fmt.Errorf("registry: artifact uri %q: want s3://bucket/key", uri)
		}
		ctx, cancel := context.WithTimeout(ctx, readTimeout)
		defer cancel()
		bu := *u
		bu.Path = ""
		bucket, err := urlMux().OpenBucket(ctx, bu.String())
		if err != nil {
			return nil, fmt.Errorf("registry: artifact uri %q: %w", uri, err)
		}
		defer bucket.Close()
		b, err := bucket.ReadAll(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("registry: read artifact %s: %w", uri, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("registry: artifact uri %q: scheme %q is not file or s3 (or this store's)", uri, u.Scheme)
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
