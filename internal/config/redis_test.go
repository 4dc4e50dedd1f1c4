package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestRedisCluster reads the cluster, ACL and TLS settings of
// testdata/redis_cluster.good.yaml (their bad values are
// testdata/redis_*.bad.yaml).
func TestRedisCluster(t *testing.T) {
	c, err := Load("testdata/redis_cluster.good.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redis
	if !r.IsCluster() || len(r.Cluster) != 3 || r.Addr != "" || r.Username != "weir" || r.Password.Reveal() != "s3cret-from-file" {
		t.Fatalf("redis section read as %+v", r)
	}
	if got := r.Endpoint(); got != "cluster 10.0.0.1:6379,10.0.0.2:6379,redis-3.internal:6379" {
		t.Errorf("Endpoint() = %q", got)
	}
	tc, err := r.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "redis.internal" || tc.InsecureSkipVerify {
		t.Fatalf("TLS config %+v", tc)
	}
	for _, format := range []string{"%v", "%+v", "%s", "%#v"} {
		if s := fmt.Sprintf(format, r); strings.Contains(s, "s3cret") {
			t.Errorf("%s prints the password: %s", format, s)
		}
	}

	// The demo's single node has TLS off.
	demo, err := Load("testdata/demo.good.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if tc, err := demo.Redis.TLSConfig(); tc != nil || err != nil || demo.Redis.IsCluster() {
		t.Errorf("demo: TLS %v, %v, cluster %v", tc, err, demo.Redis.IsCluster())
	}
}

// TestRedisEnv checks that an endpoint variable replaces the file's
// endpoint, one node or cluster, and that both at once conflict.
func TestRedisEnv(t *testing.T) {
	tests := []struct {
		file    string
		env     map[string]string
		addr    string
		cluster string
		user    string
		err     string
	}{
		{file: "demo", env: map[string]string{"WEIR_REDIS_CLUSTER": "a:1, b:2,"}, cluster: "a:1,b:2"},
		{file: "redis_cluster", env: map[string]string{"WEIR_REDIS_ADDR": "h:6379"}, addr: "h:6379", user: "weir"},
		{file: "redis_cluster", env: map[string]string{"WEIR_REDIS_CLUSTER": "c:1", "WEIR_REDIS_USERNAME": "svc"}, cluster: "c:1", user: "svc"},
		{file: "demo", env: map[string]string{"WEIR_REDIS_ADDR": "h:1", "WEIR_REDIS_CLUSTER": "c:1"}, err: "redis.cluster: set addr (one node) or cluster"},
		{file: "demo", env: map[string]string{"WEIR_REDIS_CLUSTER": "nope"}, err: `redis.cluster[0]: "nope" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			c, err := Load("testdata/"+tt.file+".good.yaml", func(k string) string { return tt.env[k] })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Redis.Addr != tt.addr || strings.Join(c.Redis.Cluster, ",") != tt.cluster || c.Redis.Username != tt.user {
				t.Errorf("addr %q cluster %q user %q, want %q %q %q", c.Redis.Addr, c.Redis.Cluster, c.Redis.Username, tt.addr, tt.cluster, tt.user)
			}
		})
	}
}
