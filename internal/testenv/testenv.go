// Package testenv gives integration tests the services they run against:
// Redis, ClickHouse, Kafka (real Apache Kafka or an in-process kfake cluster)
// and the project's Python.
//
// The services are the local stack that `make setup` (deploy/local/setup.sh)
// starts; a test finds them through the variables that setup writes to
// .weir/env:
//
//	WEIR_REDIS_ADDR       127.0.0.1:16379
//	WEIR_CLICKHOUSE_ADDR  127.0.0.1:19000 (native protocol)
//	WEIR_KAFKA_BROKERS    127.0.0.1:19092 (comma-separated seeds)
//	WEIR_PYTHON           .weir/venv/bin/python
//	WEIR_DATA             .weir, where the servers' logs are
//
// A test whose service is unset or unreachable is skipped, unless
// WEIR_REQUIRE_SERVICES=1 (as under `make test`): then it fails, so a broken
// stack never passes as a silent skip. WEIR_TEST_KAFKA picks what [Kafka]
// returns: "real", "kfake", or unset for real Kafka when WEIR_KAFKA_BROKERS is
// set and kfake otherwise.
//
// Every test gets names of its own: a Redis key prefix, a ClickHouse database,
// and topics and groups named with [Name], so tests run in parallel and beside
// other packages' tests on the same servers. The helpers remove the key prefix
// and the database at cleanup when the test passed, and keep them when it
// failed, printing the end of the server's log beside the failure.
//
// ClickHouse here is Debian's 18.16. clickhouse-go v2 speaks its native
// protocol (LZ4 too), with these limits, found against it:
//   - Insert with conn.PrepareBatch(ctx, "INSERT INTO t (a, b)"), naming the
//     columns: without them the batch has no columns and Append fails.
//   - conn.Exec(ctx, "INSERT ... VALUES (...)") hangs until the read timeout:
//     18.16 waits for the client to send the rows as a block. Use a batch, or
//     INSERT ... SELECT, which Exec runs fine (with ? bindings too).
//   - Settings sent with a query must be ints or bools; a string value fails
//     in the client ("unsupported data type"), as 18.16 predates string
//     settings.
//   - No DateTime64, ASOF JOIN or window functions; LowCardinality needs
//     allow_experimental_low_cardinality_type=1.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
)

const (
	// How long a helper waits for a service to answer before it counts as
	// unreachable.
	dialTimeout = 5 * time.Second
	// How long a ClickHouse connection waits for the server's next packet;
	// clickhouse-go's default is 5 minutes, too long for a stuck test.
	clickHouseReadTimeout = 30 * time.Second
)

// Required reports whether WEIR_REQUIRE_SERVICES=1: then a missing service
// fails the test instead of skipping it.
func Required() bool {
	return os.Getenv("WEIR_REQUIRE_SERVICES") == "1"
}

// unavailable skips t, or fails it when services are required.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "testenv: " + fmt.Sprintf(format, args...)
	if Required() {
		t.Fatal(msg + " (WEIR_REQUIRE_SERVICES=1: run `make setup` and source .weir/env)")
	}
	t.Skip(msg + " (run `make setup` and source .weir/env)")
}

// addr returns the environment variable env or skips/fails.
func addr(t testing.TB, env, service string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		unavailable(t, "%s unset, no %s to test against", env, service)
	}
	return v
}

// RedisAddr returns $WEIR_REDIS_ADDR or skips/fails.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return addr(t, "WEIR_REDIS_ADDR", "Redis")
}

// Redis returns a client for real Redis at $WEIR_REDIS_ADDR (skip/fail when
// unset or unreachable) and a unique key prefix for this test
// ("weirtest:<rand>"); keys under the prefix are deleted at cleanup unless the
// test failed.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	a := RedisAddr(t)
	c := redis.NewClient(&redis.Options{Addr: a, DialTimeout: dialTimeout})
	t.Cleanup(func() { c.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		unavailable(t, "Redis at %s: %v", a, err)
	}

	prefix := "weirtest:" + random()
	serverLog := watchLog("redis/redis.log", nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: kept Redis keys %s* at %s", prefix, a)
			serverLog.report(t)
			return
		}
		// A client of its own: the test may have closed c.
		c := redis.NewClient(&redis.Options{Addr: a, DialTimeout: dialTimeout})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Unlink(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("testenv: delete Redis key %s: %v", iter.Val(), err)
				return
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("testenv: scan Redis keys %s*: %v", prefix, err)
		}
	})
	return c, prefix
}

// ClickHouseAddr returns $WEIR_CLICKHOUSE_ADDR or skips/fails.
func ClickHouseAddr(t testing.TB) string {
	t.Helper()
	return addr(t, "WEIR_CLICKHOUSE_ADDR", "ClickHouse")
}

// ClickHouse returns an open clickhouse-go/v2 native connection (driver.Conn)
// to $WEIR_CLICKHOUSE_ADDR and the name of a fresh database created for this
// test (dropped at cleanup unless the test failed). The connection's default
// database is the fresh one, so unqualified table names land there.
func ClickHouse(t testing.TB) (driver.Conn, string) {
	t.Helper()
	a := ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The database must exist before a connection can default to it, so a
	// first connection to "default" creates it.
	admin, err := openClickHouse(ctx, a, "default")
	if err != nil {
		unavailable(t, "ClickHouse at %s: %v", a, err)
	}
	serverLog := watchLog("clickhouse/err.txt", clickHouseError)
	db := Name("weirtest_" + testName(t))
	err = admin.Exec(ctx, "CREATE DATABASE `"+db+"`")
	admin.Close()
	if err != nil {
		t.Fatalf("testenv: create ClickHouse database %s: %v", db, err)
	}

	conn, err := openClickHouse(ctx, a, db)
	if err != nil {
		t.Fatalf("testenv: connect to ClickHouse database %s: %v", db, err)
	}
	t.Cleanup(func() {
		conn.Close()
		if t.Failed() {
			t.Logf("testenv: kept ClickHouse database %s at %s", db, a)
			serverLog.report(t)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := openClickHouse(ctx, a, "default")
		if err != nil {
			t.Errorf("testenv: drop ClickHouse database %s: %v", db, err)
			return
		}
		defer admin.Close()
		if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			t.Errorf("testenv: drop ClickHouse database %s: %v", db, err)
		}
	})
	return conn, db
}

// openClickHouse connects over the native protocol and pings. The options
// are the plain ones that ClickHouse 18.16 accepts: no compression and no
// settings beyond integers and booleans (it predates settings sent as
// strings).
func openClickHouse(ctx context.Context, addr, db string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: db, Username: "default"},
		DialTimeout: dialTimeout,
		ReadTimeout: clickHouseReadTimeout,
	})
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Kafka returns seed brokers: real Apache Kafka at $WEIR_KAFKA_BROKERS when
// WEIR_TEST_KAFKA is "real" (or unset and WEIR_KAFKA_BROKERS set), else an
// in-process kfake cluster (kfake.NumBrokers(1), AllowAutoTopicCreation off,
// DefaultNumPartitions 4) closed at cleanup. The second result names which
// ("kafka" or "kfake").
func Kafka(t testing.TB) ([]string, string) {
	t.Helper()
	switch mode := os.Getenv("WEIR_TEST_KAFKA"); mode {
	case "real":
		return RealKafka(t), "kafka"
	case "kfake":
		return KFake(t), "kfake"
	case "":
		if os.Getenv("WEIR_KAFKA_BROKERS") != "" {
			return RealKafka(t), "kafka"
		}
		return KFake(t), "kfake"
	default:
		t.Fatalf(`testenv: WEIR_TEST_KAFKA=%q, want "real", "kfake" or unset`, mode)
		return nil, ""
	}
}

// RealKafka returns $WEIR_KAFKA_BROKERS or skips/fails.
func RealKafka(t testing.TB) []string {
	t.Helper()
	var seeds []string
	for _, s := range strings.Split(addr(t, "WEIR_KAFKA_BROKERS", "Kafka"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	// One seed that accepts connections is enough for a client to start.
	var errs []string
	for _, s := range seeds {
		c, err := net.DialTimeout("tcp", s, dialTimeout)
		if err == nil {
			c.Close()
			serverLog := watchLog("kafka/kafka.log", nil)
			t.Cleanup(func() {
				if t.Failed() {
					serverLog.report(t)
				}
			})
			return seeds
		}
		errs = append(errs, err.Error())
	}
	unavailable(t, "Kafka at %v: %s", seeds, strings.Join(errs, "; "))
	return nil
}

// KFake starts an in-process kfake cluster for this test and returns its
// seeds.
func KFake(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(4),
	)
	if err != nil {
		t.Fatalf("testenv: start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Python returns the path of the project's venv python ($WEIR_PYTHON) or
// skips/fails.
func Python(t testing.TB) string {
	t.Helper()
	p := addr(t, "WEIR_PYTHON", "Python")
	fi, err := os.Stat(p)
	if err != nil {
		unavailable(t, "WEIR_PYTHON: %v", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		unavailable(t, "WEIR_PYTHON=%s is not an executable file", p)
	}
	return p
}

// Name returns a unique name with the given prefix, usable as a topic, group
// or database name ([a-z0-9_.-]). Characters of prefix outside that set
// become '_'. The name is a valid unquoted ClickHouse identifier when prefix
// starts with a letter and has no '.' or '-'.
func Name(prefix string) string {
	b := []byte(strings.ToLower(prefix))
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 0 && b[len(b)-1] != '_' {
		b = append(b, '_')
	}
	return string(b) + random()
}

// random returns 12 random hex digits.
func random() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// testName is t's name shortened for a database name: letters, digits and
// '_' only, at most 40 characters.
func testName(t testing.TB) string {
	n := []byte(strings.ToLower(t.Name()))
	for i, c := range n {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			n[i] = '_'
		}
	}
	if len(n) > 40 {
		n = n[:40]
	}
	return string(n)
}

// serverLog is a server's log file under $WEIR_DATA, read from where it ended
// when a helper started, so a failure shows what the server logged during the
// test and nothing older.
type serverLog struct {
	path  string // empty when WEIR_DATA is unset
	start int64
	keep  func(line []byte) bool // nil keeps every line
}

func watchLog(rel string, keep func(line []byte) bool) serverLog {
	dir := os.Getenv("WEIR_DATA")
	if dir == "" {
		return serverLog{}
	}
	l := serverLog{path: filepath.Join(dir, rel), keep: keep}
	if fi, err := os.Stat(l.path); err == nil {
		l.start = fi.Size()
	}
	return l
}

// report logs the last lines that the server logged since watchLog.
func (l serverLog) report(t testing.TB) {
	if l.path == "" {
		return
	}
	const maxLines, maxLine, maxBytes = 20, 400, 256 << 10
	f, err := os.Open(l.path)
	if err != nil {
		t.Logf("testenv: server log: %v", err)
		return
	}
	defer f.Close()
	from := l.start
	if fi, err := f.Stat(); err == nil {
		if fi.Size() < from { // restarted or truncated since
			from = 0
		}
		from = max(from, fi.Size()-maxBytes)
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		t.Logf("testenv: server log: %v", err)
		return
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Logf("testenv: server log: %v", err)
		return
	}
	var lines [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 || l.keep != nil && !l.keep(line) {
			continue
		}
		if len(line) > maxLine {
			line = append(line[:maxLine:maxLine], "..."...)
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		t.Logf("testenv: nothing of note in %s during the test", l.path)
		return
	}
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	t.Logf("testenv: %s during the test, last %d lines:\n%s", l.path, len(lines), bytes.Join(lines, []byte("\n")))
}

// clickHouseError keeps the message lines of ClickHouse's error log and drops
// the stack traces printed under each.
func clickHouseError(line []byte) bool {
	return bytes.Contains(line, []byte("<Error>"))
}
