package online

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/internal/config"
)

// dialTimeout bounds connecting to a node and the check that Dial makes.
const dialTimeout = 5 * time.Second

// Dial returns a client of the configured Redis: a *redis.Client for one
// node (redis.addr) or a *redis.ClusterClient for a Redis Cluster
// (redis.cluster, seed nodes), authenticated as redis.username with
// redis.password (an ACL user, or requirepass when username is empty), over
// TLS when redis.tls.enabled. It checks that every node answers PING (every
// master and replica of a cluster) before it returns. Errors name the
// endpoint and the user, never the password.
func Dial(ctx context.Context, c config.Redis) (redis.UniversalClient, error) {
	if c.Addr == "" && !c.IsCluster() {
		return nil, fmt.Errorf("redis.addr: not set (set it, redis.cluster, WEIR_REDIS_ADDR or WEIR_REDIS_CLUSTER; `make setup` starts one on 127.0.0.1:16379)")
	}
	tc, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	var rdb redis.UniversalClient
	if c.IsCluster() {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.Cluster, Username: c.Username, Password: c.Password.Reveal(), TLSConfig: tc, DialTimeout: dialTimeout,
		})
	} else {
		rdb = redis.NewClient(&redis.Options{
			Addr: c.Addr, Username: c.Username, Password: c.Password.Reveal(), DB: c.DB, TLSConfig: tc, DialTimeout: dialTimeout,
		})
	}
	pctx, cancel := context.WithTimeout(ctx, 2*dialTimeout)
	defer cancel()
	ping := func(ctx context.Context, c redis.Cmdable) error { return c.Ping(ctx).Err() }
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachShard(pctx, func(ctx context.Context, c *redis.Client) error {
			if err := ping(ctx, c); err != nil {
				return fmt.Errorf("node %s: %w", c.Options().Addr, err)
			}
			return nil
		})
	} else {
		err = ping(pctx, rdb)
	}
	if err != nil {
		rdb.Close()
		user := c.Username
		if user == "" {
			user = "default"
		}
		return nil, fmt.Errorf("redis %s (user %s, tls %v): %w (is Redis running? `make setup` starts it)", c.Endpoint(), user, tc != nil, err)
	}
	return rdb, nil
}
