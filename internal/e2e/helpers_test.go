package e2e

import (
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/weirhq/weir/schemas/registry"
)

// serveRegistry serves a schema registry in a temporary directory until
// the test ends and returns its URL.
func serveRegistry(t *testing.T) string {
	t.Helper()
	srv, err := registry.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { l.Close() })
	return "http://" + l.Addr().String()
}

// roleLog returns a logger into a temporary file whose last tail lines
// the test prints if it fails.
func roleLog(t *testing.T, tail int) *slog.Logger {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "weir-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			lines := strings.Split(string(b), "\n")
			t.Logf("last log lines:\n%s", strings.Join(lines[max(0, len(lines)-tail):], "\n"))
		}
	})
	return slog.New(slog.NewTextHandler(f, nil))
}
