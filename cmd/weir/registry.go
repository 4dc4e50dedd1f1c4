package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"

	"github.com/weirhq/weir/schemas/registry"
)

// cmdRegistry serves Weir's persisted Confluent-compatible schema registry
// on its own, for `weir run` against a Kafka that has no registry beside it.
func cmdRegistry(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18081", "listen address")
	dir := fs.String("dir", ".weir/registry", "directory the registrations persist in")
	if err := parse(fs, args); err != nil {
		return err
	}
	srv, err := registry.Open(*dir)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	fmt.Fprintf(stdout, "schema registry on http://%s (data in %s); export WEIR_SCHEMA_REGISTRY_URL=http://%s\n", l.Addr(), *dir, l.Addr())
	go func() {
		<-ctx.Done()
		srv.Close()
		l.Close()
	}()
	return srv.Serve(l)
}
