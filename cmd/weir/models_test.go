package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/testenv"
	sr "github.com/weirhq/weir/schemas/registry"
)

// TestModelsRegister runs weir models keygen, register (signed, unsigned,
// unnamed features) and list against kfake with model_registry.public_key
// and artifacts (a file:// URL) set, and a config whose key file is
// missing.
func TestModelsRegister(t *testing.T) {
	seeds := testenv.KFake(t)
	srv, err := sr.Open("")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	t.Setenv("WEIR_KAFKA_BROKERS", strings.Join(seeds, ","))
	t.Setenv("WEIR_SCHEMA_REGISTRY_URL", hs.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "weir.models"); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	demo, err := os.ReadFile("../../deploy/demo/weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(demo), "data_dir: .weir/dev", "data_dir: "+filepath.Join(dir, "data"), 1)
	config := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(config, []byte(cfg+"\nmodel_registry:\n  public_key: "+filepath.Join(dir, "k.pub.pem")+"\n  artifacts: file://"+filepath.Join(dir, "artifacts")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badConfig := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badConfig, []byte(cfg+"\nmodel_registry:\n  public_key: "+filepath.Join(dir, "none.pem")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	xgb := "../../scoring/model/testdata/xgboost/binary_logistic_names.json"

	var out bytes.Buffer
	if err := run(ctx, []string{"models", "keygen", "-out", filepath.Join(dir, "k")}, &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"models", "register", "-config", config, "-model", "fraud", "-artifact", xgb, "-key", filepath.Join(dir, "k.pem"), "-champion", "-reason", "first"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "fraud v1 (xgboost-json, 6 features, signed)"; !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "at file://"+filepath.Join(dir, "artifacts", "fraud", "v1.json")) {
		t.Fatalf("register: %q, want %q", out.String(), want)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-config", config, "-model", "fraud", "-artifact", xgb}, "the record is unsigned and a public key is configured"},
		{[]string{"-config", config, "-model", "fraud", "-artifact", "../../scoring/model/testdata/lightgbm/binary.txt", "-key", filepath.Join(dir, "k.pem")}, "does not name its 6 features"},
		{[]string{"-config", config, "-model", "fraud", "-artifact", xgb, "-key", filepath.Join(dir, "k.pub.pem")}, `-key`},
		{[]string{"-config", badConfig, "-model", "fraud", "-artifact", xgb}, "model_registry.public_key"},
	} {
		if err := run(ctx, append([]string{"models", "register"}, c.args...), &out); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("register %v: %v, want %q", c.args, err, c.want)
		}
	}
	out.Reset()
	if err := run(ctx, []string{"models", "list", "-config", config}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "v1") || !strings.Contains(out.String(), "champion") || strings.Contains(out.String(), "v2") {
		t.Fatalf("models list:\n%s", out.String())
	}

	// With model_registry.private_key, what this process publishes is
	// signed without -key.
	signing := filepath.Join(dir, "signing.yaml")
	if err := os.WriteFile(signing, []byte(cfg+"\nmodel_registry:\n  public_key: "+filepath.Join(dir, "k.pub.pem")+"\n  private_key: "+filepath.Join(dir, "k.pem")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"models", "register", "-config", signing, "-model", "fraud", "-artifact", xgb}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "fraud v2 (xgboost-json, 6 features, signed)"; !strings.Contains(out.String(), want) {
		t.Fatalf("register with private_key: %q, want %q", out.String(), want)
	}
}
