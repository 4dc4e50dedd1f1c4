package registry

import (
	"context"
	"net"
	"testing"

	"github.com/weirhq/weir/schemas"
)

func serve(t *testing.T, dir string) string {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { l.Close() })
	return "http://" + l.Addr().String()
}

// TestPersistedIDs registers every embedded schema, restarts the registry from
// its file, and checks that ids are kept and new schemas get fresh ids.
func TestPersistedIDs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ids := map[string]int{}
	{
		cl, err := schemas.NewSRClient(serve(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range schemas.Names() {
			id, err := cl.Register(ctx, n+"-value", schemas.MustParse(n).Text)
			if err != nil {
				t.Fatal(err)
			}
			ids[n] = id
		}
		// Registering again is idempotent.
		again, err := cl.Register(ctx, "label-value", schemas.MustParse("label").Text)
		if err != nil || again != ids["label"] {
			t.Fatalf("re-register label: id %d err %v, want %d", again, err, ids["label"])
		}
	}
	cl, err := schemas.NewSRClient(serve(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for n, id := range ids {
		text, err := cl.SchemaByID(ctx, id)
		if err != nil {
			t.Fatalf("after restart, schema %s id %d: %v", n, id, err)
		}
		if text != schemas.MustParse(n).Text {
			t.Fatalf("after restart, id %d holds another schema", id)
		}
		seen[id] = true
	}
	id, err := cl.Register(ctx, "other-value", `{"type":"record","name":"X","fields":[{"name":"a","type":"int"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if seen[id] {
		t.Fatalf("new schema got reused id %d", id)
	}
}
