package testenv_test

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/weirhq/weir/internal/testenv"
)

// The helpers' cleanups must close every client and cluster they open.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_.-]+$`)
	seen := map[string]bool{}
	for _, prefix := range []string{"orders", "Orders/Test Case", "a.b-c_", ""} {
		for range 100 {
			n := testenv.Name(prefix)
			if !valid.MatchString(n) {
				t.Fatalf("Name(%q) = %q, not [a-z0-9_.-]", prefix, n)
			}
			if seen[n] {
				t.Fatalf("Name(%q) = %q twice", prefix, n)
			}
			seen[n] = true
		}
	}
	if n := testenv.Name("orders"); !strings.HasPrefix(n, "orders_") {
		t.Errorf(`Name("orders") = %q, want prefix "orders_"`, n)
	}
}

func TestRedis(t *testing.T) {
	var (
		ctx    = context.Background()
		prefix string
	)
	t.Run("setget", func(t *testing.T) {
		c, p := testenv.Redis(t)
		prefix = p
		if !strings.HasPrefix(p, "weirtest:") {
			t.Errorf("prefix %q, want weirtest:<rand>", p)
		}
		for _, k := range []string{p + ":a", p + ":b"} {
			if err := c.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		got, err := c.Get(ctx, p+":a").Result()
		if err != nil || got != "v-"+p+":a" {
			t.Fatalf("GET %s:a = %q, %v", p, got, err)
		}
	})

	// The subtest passed, so its cleanup deleted its keys.
	c, _ := testenv.Redis(t)
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("keys left after cleanup: %v", keys)
	}
}

func TestClickHouse(t *testing.T) {
	ctx := context.Background()
	var db string
	t.Run("table", func(t *testing.T) {
		conn, d := testenv.ClickHouse(t)
		db = d

		// Unqualified names land in the test's database.
		err := conn.Exec(ctx, `CREATE TABLE events (
			entity String,
			ts DateTime,
			value Float64
		) ENGINE = MergeTree ORDER BY (entity, ts)`)
		if err != nil {
			t.Fatal(err)
		}
		// ClickHouse 18.16: an INSERT must name its columns.
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO events (entity, ts, value)")
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		for i := range 3 {
			if err := batch.Append("e1", t0.Add(time.Duration(i)*time.Minute), float64(i)+0.5); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatal(err)
		}

		var (
			n    uint64
			sum  float64
			last time.Time
		)
		row := conn.QueryRow(ctx, "SELECT count(), sum(value), max(ts) FROM "+db+".events WHERE entity = ?", "e1")
		if err := row.Scan(&n, &sum, &last); err != nil {
			t.Fatal(err)
		}
		if n != 3 || sum != 4.5 || !last.Equal(t0.Add(2*time.Minute)) {
			t.Errorf("count, sum, max(ts) = %d, %v, %v; want 3, 4.5, %v", n, sum, last, t0.Add(2*time.Minute))
		}
	})

	// The subtest passed, so its cleanup dropped its database.
	conn, _ := testenv.ClickHouse(t)
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s left after cleanup", db)
	}
}

func TestKafka(t *testing.T) {
	t.Run("selected", func(t *testing.T) {
		seeds, kind := testenv.Kafka(t)
		t.Logf("%s at %v", kind, seeds)
		produceConsume(t, seeds)
	})
	t.Run("kfake", func(t *testing.T) {
		produceConsume(t, testenv.KFake(t))
	})
}

// produceConsume creates a fresh topic, produces one record and reads it back.
func produceConsume(t *testing.T, seeds []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	admin := kadm.NewClient(adm)

	topic := testenv.Name("weirtest")
	if _, err := admin.CreateTopic(ctx, 4, 1, nil, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			t.Error(err)
			return
		}
		defer cl.Close()
		if _, err := kadm.NewClient(cl).DeleteTopic(ctx, topic); err != nil {
			t.Errorf("delete topic %s: %v", topic, err)
		}
	})

	producer, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	want := &kgo.Record{Key: []byte("k1"), Value: []byte("hello")}
	if err := producer.ProduceSync(ctx, want).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	fetches := consumer.PollFetches(ctx)
	if err := fetches.Err(); err != nil {
		t.Fatalf("consume: %v", err)
	}
	recs := fetches.Records()
	if len(recs) != 1 || string(recs[0].Key) != "k1" || string(recs[0].Value) != "hello" {
		t.Fatalf("consumed %d records (%v), want one k1=hello", len(recs), recs)
	}
	if recs[0].Partition != want.Partition || recs[0].Offset != 0 {
		t.Errorf("read back at partition %d offset %d, produced to partition %d offset 0",
			recs[0].Partition, recs[0].Offset, want.Partition)
	}
}

func TestPython(t *testing.T) {
	py := testenv.Python(t)
	out, err := exec.Command(py, "-c",
		"import numpy, pandas, sklearn, scipy; print(numpy.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", py, err, out)
	}
}
