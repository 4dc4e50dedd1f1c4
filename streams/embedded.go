package streams

import (
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is the single-node broker `weir dev` runs: franz-go's kfake with
// its state persisted under a directory, so topics, offsets and committed
// transactions survive a restart. It speaks the Kafka protocol, including
// transactions and read_committed, to any client.
type Embedded struct {
	c *kfake.Cluster
}

// StartEmbedded starts the broker on 127.0.0.1:port (0 picks a free port),
// persisting to dir.
func StartEmbedded(dir string, port int) (*Embedded, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded broker: create %s: %w", dir, err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DataDir(dir),
	}
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker in %s: %w (another `weir dev` may be running on this data directory)", dir, err)
	}
	return &Embedded{c: c}, nil
}

// Seeds are the broker's addresses.
func (e *Embedded) Seeds() []string { return e.c.ListenAddrs() }

// Close stops the broker, flushing its state to disk.
func (e *Embedded) Close() { e.c.Close() }
