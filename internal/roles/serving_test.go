package roles_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/featurestore/client"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

const servingYAML = `
kafka: {client_id: servingtest, brokers: ["127.0.0.1:9"]} # unreachable: the serve role starts without the view catalog (weir.yaml's versions only)
redis: {addr: REDIS, key_prefix: PREFIX}
serve: {addr: ADDR}
sources:
  - {name: payments, topic: payments.transactions, schema: transaction, key: card_id, id: txn_id, event_time: event_time}
entities:
  - {name: card, key: card_id}
views:
  - name: card_activity
    source: payments
    entity: card
    ttl: 1h
    features:
      - {name: txn_count_5m, agg: count, window: 5m}
      - {name: amount_last, agg: last, field: amount}
`

// TestServeRole runs the serve role as `weir run --role serve` does, with
// the token from WEIR_SERVE_TOKEN, and reads features written to its Redis
// through the client; /metrics shows the request.
func TestServeRole(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	yaml := strings.NewReplacer("REDIS", testenv.RedisAddr(t), "PREFIX", prefix, "ADDR", addr).Replace(servingYAML)
	cfg, err := config.Parse("serving.yaml", []byte(yaml), func(k string) string {
		if k == "WEIR_SERVE_TOKEN" {
			return "t0ken"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	view := cfg.Views[0]
	if err := online.New(rdb, prefix, cfg.Views).Write(context.Background(), []schemas.FeatureRow{{
		Entity: "card-1", View: view.Name, ViewVersion: view.Version(), EventTime: time.Now().UnixMilli() - 1000, SourceOffset: 1, RevisesOffset: -1,
		Values: []schemas.FeatureValue{{Name: "txn_count_5m", Value: 2}, {Name: "amount_last", Value: 19.5}},
	}}); err != nil {
		t.Fatal(err)
	}

	var logs strings.Builder
	env, err := roles.NewEnv(cfg, slog.New(slog.NewTextHandler(&logs, nil)), "servingtest")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	plan, err := env.Build(context.Background(), []string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- roles.RunAll(ctx, plan.Runners) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve role: %v", err)
		}
	}()

	c, err := client.New("http://"+addr, client.WithToken("t0ken"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	var res *client.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, err = c.Get(context.Background(), []string{"card-1", "card-2"}, "card_activity"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	got := res.Results[0].Values
	if len(got) != 2 || got[0].Value != 2 || got[1].Value != 19.5 || got[0].Status != client.Present || res.Results[1].Values[0].Status != client.Missing {
		t.Errorf("results %+v", res.Results)
	}
	anon, err := client.New("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.CloseIdleConnections()
	_, err = anon.Get(context.Background(), []string{"card-1"}, "card_activity")
	var e *client.Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %v", err)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`weir_serve_requests_total{outcome="ok"} 1`, `weir_serve_requests_total{outcome="unauthorized"} 1`,
		`weir_serve_values_total{status="present",view="card_activity"} 2`, "weir_serve_request_seconds_bucket"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(logs.String(), "view catalog unreachable") {
		t.Errorf("the log does not say the view catalog was unreachable:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "t0ken") {
		t.Errorf("the token is in the log:\n%s", logs.String())
	}
}
