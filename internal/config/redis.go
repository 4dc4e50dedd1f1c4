package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// IsCluster reports whether the online store is a Redis Cluster.
func (r *Redis) IsCluster() bool { return len(r.Cluster) > 0 }

// Endpoint describes where Redis is, for messages: the address or the
// cluster's seeds. It never includes credentials.
func (r *Redis) Endpoint() string {
	if r.IsCluster() {
		return "cluster " + strings.Join(r.Cluster, ",")
	}
	return r.Addr
}

// TLSConfig returns the crypto/tls configuration of redis.tls, nil when TLS
// is off. Errors name the field.
func (r *Redis) TLSConfig() (*tls.Config, error) {
	c, field, err := r.TLS.build()
	if err != nil {
		return nil, fmt.Errorf("redis.tls.%s: %w", field, err)
	}
	return c, nil
}

// validateRedis checks the redis section; bad reports a problem with a field.
func (c *Config) validateRedis(bad func(field, format string, a ...any)) {
	r := &c.Redis
	if r.Addr != "" && r.IsCluster() {
		bad("redis.cluster", "set addr (one node) or cluster (seed nodes of a Redis Cluster), not both (WEIR_REDIS_ADDR and WEIR_REDIS_CLUSTER count too)")
	}
	if r.Addr != "" {
		if err := hostPort(r.Addr); err != nil {
			bad("redis.addr", "%v", err)
		}
	}
	for i, a := range r.Cluster {
		if err := hostPort(a); err != nil {
			bad(fmt.Sprintf("redis.cluster[%d]", i), "%v", err)
		}
	}
	switch {
	case r.DB < 0:
		bad("redis.db", "must not be negative, got %d", r.DB)
	case r.DB != 0 && r.IsCluster():
		bad("redis.db", "a Redis Cluster has only database 0, got %d", r.DB)
	}
	if strings.ContainsAny(r.KeyPrefix, "{} \t\n") {
		bad("redis.key_prefix", "%q may not contain braces or spaces: the hash tag of a key must be its entity, so that an entity's views share a Cluster slot", r.KeyPrefix)
	}
	if _, field, err := r.TLS.build(); err != nil {
		bad("redis.tls."+field, "%v", err)
	}
}

func hostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%q is not host:port", a)
	}
	return nil
}

// build returns the TLS config (nil when off), or the field at fault and
// the problem.
func (t *TLS) build() (*tls.Config, string, error) {
	if !t.Enabled {
		for _, f := range []struct {
			name string
			set  bool
		}{{"ca_file", t.CAFile != ""}, {"cert_file", t.CertFile != ""}, {"key_file", t.KeyFile != ""},
			{"server_name", t.ServerName != ""}, {"insecure_skip_verify", t.InsecureSkipVerify}} {
			if f.set {
				return nil, f.name, errors.New("set while tls.enabled is false: enable TLS or remove it")
			}
		}
		return nil, "", nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, "ca_file", err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "ca_file", fmt.Errorf("no PEM certificate in %s", t.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return nil, "key_file", errors.New("is required with cert_file")
	case t.KeyFile != "" && t.CertFile == "":
		return nil, "cert_file", errors.New("is required with key_file")
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, "cert_file", err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, "", nil
}
