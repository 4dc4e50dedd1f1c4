package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGood(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.yaml")
	if len(files) == 0 {
		t.Fatal("no good configs")
	}
	for _, f := range files {
		c, err := Load(f, func(string) string { return "" })
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.Topics.Partitions < 1 || c.Kafka.CommitInterval.D() != 100*time.Millisecond {
			t.Fatalf("%s: defaults not applied: %+v", f, c.Topics)
		}
	}
}

func TestDemoConfigIsTheShippedOne(t *testing.T) {
	a, _ := os.ReadFile("testdata/demo.good.yaml")
	b, _ := os.ReadFile("../../deploy/demo/weir.yaml")
	if string(a) != string(b) {
		t.Fatal("testdata/demo.good.yaml differs from deploy/demo/weir.yaml: copy it over")
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{"WEIR_KAFKA_BROKERS": "a:1,b:2", "WEIR_REDIS_PASSWORD": "hunter2", "WEIR_CLICKHOUSE_ADDR": "ch:9000"}
	c, err := Load("testdata/demo.good.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Kafka.Brokers) != 2 || c.ClickHouse.Addr != "ch:9000" || c.Redis.Password.Reveal() != "hunter2" {
		t.Fatalf("overrides not applied: %+v", c)
	}
	for _, format := range []string{"%v", "%+v", "%s", "%q", "%#v"} {
		if s := fmt.Sprintf(format, c.Redis); strings.Contains(s, "hunter2") {
			t.Fatalf("%s prints the secret: %s", format, s)
		}
	}
}

// TestBad checks that each bad config fails with a message naming the file,
// line and field. Expected messages are in the first line of each file,
// after "# want: ".
func TestBad(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) == 0 {
		t.Fatal("no bad configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: <message>'", f)
			}
			_, err = Parse(f, b, nil)
			if err == nil {
				t.Fatalf("%s: no error, want %q", f, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("%s:\n got %v\nwant %q", f, err, want)
			}
		})
	}
}

// TestGuarantee checks kafka.guarantee's default and the at-least-once
// config (its bad value is testdata/guarantee.bad.yaml).
func TestGuarantee(t *testing.T) {
	for file, want := range map[string]string{
		"testdata/demo.good.yaml":          GuaranteeExactlyOnce,
		"testdata/at_least_once.good.yaml": GuaranteeAtLeastOnce,
	} {
		c, err := Load(file, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if c.Kafka.Guarantee != want {
			t.Errorf("%s: kafka.guarantee %q, want %q", file, c.Kafka.Guarantee, want)
		}
	}
}
