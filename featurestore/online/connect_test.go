package online_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

func random() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// unavailable skips t, or fails it under WEIR_REQUIRE_SERVICES=1.
func unavailable(t *testing.T, format string, a ...any) {
	t.Helper()
	if testenv.Required() {
		t.Fatalf(format, a...)
	}
	t.Skipf(format, a...)
}

// redisCluster starts (or finds running) the local stack's Redis Cluster,
// deploy/local/redis.sh cluster-start, and returns its seed addresses.
func redisCluster(t *testing.T) []string {
	t.Helper()
	testenv.RedisAddr(t) // the cluster comes with the local stack's Redis
	if testing.Short() {
		t.Skip("-short: no Redis Cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "../../deploy/local/redis.sh", "cluster-start").CombinedOutput()
	if err != nil {
		unavailable(t, "deploy/local/redis.sh cluster-start: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Split(lines[len(lines)-1], ",")
}

// TestCluster runs the store on a real Redis Cluster of three masters: the
// conformance cases, keys spread over every master with one entity's view
// versions in one slot, the script reloaded on every master after SCRIPT
// FLUSH, scans over every master.
func TestCluster(t *testing.T) {
	addrs := redisCluster(t)
	ctx := context.Background()
	prefix := "weirtest:" + random()
	rdb, err := online.Dial(ctx, config.Redis{Cluster: addrs, KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() }) // after the cleanup below, which needs it
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("Dial returned a %T for a cluster", rdb)
	}
	s := online.New(rdb, prefix, views)
	t.Cleanup(func() {
		if !t.Failed() {
			if _, err := s.DeleteAll(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})

	// The conformance cases under a prefix of their own (in the cleanup's).
	t.Run("conformance", func(t *testing.T) { conformance(t, online.New(rdb, prefix+":conformance", views)) })

	// 300 entities of two views, among them names with braces.
	entities := []string{"a}b", "{x}", "}{", "caf\u00e9", "with:colon"}
	for i := range 295 {
		entities = append(entities, fmt.Sprintf("card-%d", i))
	}
	var rows []schemas.FeatureRow
	for i, e := range entities {
		r := row(e, int64(i), int64(i), float64(i))
		m := r
		m.View, m.ViewVersion = "merchant", "v7"
		rows = append(rows, r, m)
	}
	if err := s.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// Every key of an entity hashes to one slot (its hash tag is the
	// entity), except for an entity that starts with '}': its tag is empty,
	// so Redis hashes each whole key (see the package doc).
	for _, e := range entities {
		if strings.HasPrefix(e, "}") {
			continue
		}
		a, err := cc.ClusterKeySlot(ctx, online.RedisKey(prefix, online.Key{View: "card", Version: "v1", Entity: e})).Result()
		if err != nil {
			t.Fatal(err)
		}
		b, err := cc.ClusterKeySlot(ctx, online.RedisKey(prefix, online.Key{View: "merchant", Version: "v7", Entity: e})).Result()
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("entity %q: card key in slot %d, merchant key in slot %d", e, a, b)
		}
	}
	// The keys are spread over every master.
	perNode := map[string]int64{}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n := int64(0)
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		perNode[c.Options().Addr] = n
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(perNode) != len(addrs) {
		t.Errorf("keys on %d masters (%v), want %d", len(perNode), perNode, len(addrs))
	}
	for addr, n := range perNode {
		if n < 50 {
			t.Errorf("master %s holds %d keys: not spread (%v)", addr, n, perNode)
		}
	}

	// A Redis that lost its scripts (restart, SCRIPT FLUSH) gets the script
	// again on every master.
	if err := cc.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var newer []schemas.FeatureRow
	for i, e := range entities {
		newer = append(newer, row(e, int64(i)+1000, int64(i)+1000, -float64(i)))
	}
	if err := s.Write(ctx, newer); err != nil {
		t.Fatalf("write after SCRIPT FLUSH: %v", err)
	}
	keys := make([]online.Key, len(entities))
	for i, e := range entities {
		keys[i] = online.Key{View: "card", Version: "v1", Entity: e}
	}
	got, found, err := s.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if !found[i] || got[i].Values["x"] != -float64(i) || got[i].EventTime != int64(i)+1000 {
			t.Errorf("%s: found %v, row %+v", keys[i].Entity, found[i], got[i])
		}
	}

	// Scans cover every master.
	sample, err := s.SampleEntities(ctx, "card", "v1", 1000)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(sample)
	want := slices.Sorted(slices.Values(entities))
	if !slices.Equal(sample, want) {
		t.Errorf("SampleEntities found %d entities, want %d", len(sample), len(want))
	}
	kc, err := s.CountKeys(ctx, "merchant", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !kc.Complete || kc.Versions["v7"] != int64(len(entities)) || len(kc.Versions) != 1 {
		t.Errorf("CountKeys(merchant) = %+v, want v7: %d", kc, len(entities))
	}
}

// TestACL connects as an ACL user whose key pattern is the test's prefix:
// writes (EVALSHA with the key in KEYS) and reads work, a key outside the
// pattern is refused, and a wrong password fails without being printed.
func TestACL(t *testing.T) {
	admin, prefix := testenv.Redis(t)
	ctx := context.Background()
	user, pass := "weirtest-"+random(), "pw-"+random()
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "reset", "on", ">"+pass, "~"+prefix+":*", "+@all", "-@dangerous").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	cfg := config.Redis{Addr: testenv.RedisAddr(t), Username: user, Password: config.Secret(pass), KeyPrefix: prefix}
	rdb, err := online.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if who, err := rdb.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != user {
		t.Fatalf("connected as %q (%v), want %s", who, err, user)
	}
	s := online.New(rdb, prefix, views)
	if err := s.Write(ctx, []schemas.FeatureRow{row("a", 10, 1, 1)}); err != nil {
		t.Fatalf("write as %s: %v", user, err)
	}
	if got, ok, err := s.Get(ctx, "card", "v1", "a"); err != nil || !ok || got.Values["x"] != 1 {
		t.Fatalf("read as %s: %+v %v %v", user, got, ok, err)
	}
	outside := online.New(rdb, "elsewhere"+random(), views)
	if err := outside.Write(ctx, []schemas.FeatureRow{row("a", 10, 1, 1)}); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("write outside the user's key pattern: err %v, want NOPERM", err)
	}

	cfg.Password = "wrong-" + config.Secret(pass)
	_, err = online.Dial(ctx, cfg)
	if err == nil {
		t.Fatal("a wrong password connected")
	}
	if strings.Contains(err.Error(), pass) {
		t.Errorf("the error prints the password: %v", err)
	}
	if !strings.Contains(err.Error(), "WRONGPASS") || !strings.Contains(err.Error(), user) {
		t.Errorf("error %q should say WRONGPASS and name the user", err)
	}
}

// TestTLS starts a redis-server with TLS only (tls-auth-clients yes) and
// checks each redis.tls setting: the CA, the client certificate, the
// server name and insecure_skip_verify.
func TestTLS(t *testing.T) {
	testenv.RedisAddr(t) // redis-server comes with the local stack
	if testing.Short() {
		t.Skip("-short: no TLS Redis")
	}
	server, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server: %v", err)
	}
	dir := t.TempDir()
	pki := newPKI(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(server, "--port", "0", "--tls-port", port, "--bind", "127.0.0.1",
		"--tls-cert-file", pki.serverCert, "--tls-key-file", pki.serverKey, "--tls-ca-cert-file", pki.ca,
		"--tls-auth-clients", "yes", "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Logf("redis-server log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			// Debian builds redis-server with TLS; a build without it
			// refuses --tls-port and exits.
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Skipf("redis-server does not serve TLS here (%v): %s", err, b)
		case <-time.After(50 * time.Millisecond): // waiting for a server process to listen
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server with TLS not listening on %s after 10s", addr)
		}
	}

	ctx := context.Background()
	tests := []struct {
		name string
		tls  config.TLS
		err  string // "" connects; "*" any error
	}{
		{"ca and client certificate", config.TLS{Enabled: true, CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey}, ""},
		{"server name in the certificate", config.TLS{Enabled: true, CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey, ServerName: "localhost"}, ""},
		{"insecure skip verify", config.TLS{Enabled: true, InsecureSkipVerify: true, CertFile: pki.clientCert, KeyFile: pki.clientKey}, ""},
		{"no client certificate", config.TLS{Enabled: true, CAFile: pki.ca}, "certificate"},
		{"system roots only", config.TLS{Enabled: true, CertFile: pki.clientCert, KeyFile: pki.clientKey}, "certificate signed by unknown authority"},
		{"wrong server name", config.TLS{Enabled: true, CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey, ServerName: "redis.example"}, "redis.example"},
		{"plain text to a TLS port", config.TLS{}, "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := "weirtest:" + random()
			rdb, err := online.Dial(ctx, config.Redis{Addr: addr, KeyPrefix: prefix, TLS: tt.tls})
			if tt.err != "" {
				if err == nil {
					rdb.Close()
					t.Fatalf("connected, want an error with %q", tt.err)
				}
				if tt.err != "*" && !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			s := online.New(rdb, prefix, views)
			if err := s.Write(ctx, []schemas.FeatureRow{row("a", 10, 1, 4)}); err != nil {
				t.Fatal(err)
			}
			if got, ok, err := s.Get(ctx, "card", "v1", "a"); err != nil || !ok || got.Values["x"] != 4 {
				t.Fatalf("read over TLS: %+v %v %v", got, ok, err)
			}
		})
	}
}

// pki is a test CA with a server certificate for 127.0.0.1 and localhost
// and a client certificate, as PEM files.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, DNSNames: dns}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := pki{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth, nil, nil)
	return p
}
