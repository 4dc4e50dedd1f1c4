package statestore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openPebble(t *testing.T, dir string, part int32) Store[testState] {
	t.Helper()
	for _, im := range impls {
		if im.name == "pebble" {
			return im.open(t, dir, part)
		}
	}
	t.Fatal("no pebble impl")
	return nil
}

func TestPebbleCodecError(t *testing.T) {
	for _, im := range impls {
		if !im.codec {
			continue
		}
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t, t.TempDir(), 3)
			defer s.Close()
			apply(t, s, Put[testState]{Key: "card-7", State: testState{N: 1, S: "bad"}, Time: 10}, put("card-8", 2, 10))
			_, ok, err := s.Get("card-7")
			if !errors.Is(err, errUndecodable) || ok {
				t.Fatalf("Get of an undecodable state: %v, %v; want errUndecodable", ok, err)
			}
			if !strings.Contains(err.Error(), `"card-7"`) || !strings.Contains(err.Error(), "partition 3") {
				t.Errorf("error %q does not name the key and partition", err)
			}
			if got, ok, err := s.Get("card-8"); err != nil || !ok || got.N != 2 {
				t.Errorf("Get(card-8) = %+v, %v, %v", got, ok, err)
			}
		})
	}
}

func TestPebbleFiles(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "partition-5")
	// Files left by an earlier run (a crash: no Close) are deleted.
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pdir, "000001.sst"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openPebble(t, dir, 5)
	apply(t, s, put("a", 1, 10))
	if _, err := os.Stat(filepath.Join(pdir, "000001.sst")); !os.IsNotExist(err) {
		t.Errorf("a file of an earlier run survived Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pdir); !os.IsNotExist(err) {
		t.Errorf("Close left %s: %v", pdir, err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Reopened, the partition starts empty.
	s = openPebble(t, dir, 5)
	defer s.Close()
	if s.Len() != 0 {
		t.Errorf("reopened store has Len %d", s.Len())
	}
	if _, ok, err := s.Get("a"); ok || err != nil {
		t.Errorf("reopened store has a: %v, %v", ok, err)
	}
	if got := expired(t, s, 100); len(got) != 0 {
		t.Errorf("reopened store's index has %q", got)
	}
}

func TestPebbleConfig(t *testing.T) {
	cases := []struct {
		cfg  PebbleConfig
		part int32
		err  string
	}{
		{cfg: PebbleConfig{}, err: "statestore: pebble: dir: empty"},
		{cfg: PebbleConfig{Dir: "x", CacheBytes: -1}, err: "statestore: pebble: cache_bytes: -1 is negative"},
		{cfg: PebbleConfig{Dir: "x", MemTableBytes: -2}, err: "statestore: pebble: memtable_bytes: -2 is negative"},
		{cfg: PebbleConfig{Dir: "x", MemTableBytes: 4 << 30}, err: "statestore: pebble: memtable_bytes: 4294967296 is over Pebble's limit of 4 GiB"},
		{cfg: PebbleConfig{Dir: "x"}, part: -1, err: "statestore: pebble: partition -1 is negative"},
	}
	for _, c := range cases {
		t.Run(c.err, func(t *testing.T) {
			_, err := OpenPebble[testState](c.cfg, c.part, testCodec{})
			if err == nil || err.Error() != c.err {
				t.Errorf("OpenPebble(%+v, %d) = %v, want %q", c.cfg, c.part, err, c.err)
			}
		})
	}
	d := PebbleConfig{Dir: "x"}.withDefaults()
	if d.CacheBytes != DefaultCacheBytes || d.MemTableBytes != DefaultMemTableBytes {
		t.Errorf("defaults: %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}
