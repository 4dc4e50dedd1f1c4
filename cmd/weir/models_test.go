package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	sr "github.com/weirhq/weir/schemas/registry"
	"github.com/weirhq/weir/scoring/registry"
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

// TestModelsPromoteRollback runs weir models promote, rollback, diff,
// show and history on Kafka (real Apache Kafka when WEIR_KAFKA_BROKERS is
// set) with signed artifacts: each move is read back by a fresh process
// (show -json) and the alias timeline by history; a tampered artifact is
// refused and the champion stays; rollbacks walk back through the
// recorded holders and stop where none is recorded.
func TestModelsPromoteRollback(t *testing.T) {
	seeds, _ := testenv.Kafka(t)
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
	prefix := testenv.Name("weirtest")
	adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if resp, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, prefix+".models"); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}

	dir := t.TempDir()
	demo, err := os.ReadFile("../../deploy/demo/weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(demo), "data_dir: .weir/dev", "data_dir: "+filepath.Join(dir, "data"), 1)
	cfg = strings.Replace(cfg, "topics:\n", "topics:\n  prefix: "+prefix+"\n", 1)
	arts := filepath.Join(dir, "artifacts")
	config := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(config, []byte(cfg+"\nmodel_registry:\n  public_key: "+filepath.Join(dir, "k.pub.pem")+"\n  private_key: "+filepath.Join(dir, "k.pem")+"\n  artifacts: file://"+arts+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	weir := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append(append([]string{"models"}, args...), "-config", config), &out)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := weir(args...)
		if err != nil {
			t.Fatalf("weir models %v: %v", args, err)
		}
		return out
	}
	// showJSON reads a version (the champion when none is named) back in
	// a fresh process: show -json, whose record's keys must be the Avro
	// field names of model_record.avsc (snake_case), no Go field names.
	var avroFields []string
	{
		var sch struct {
			Fields []struct {
				Name string `json:"name"`
			} `json:"fields"`
		}
		if err := json.Unmarshal([]byte(schemas.MustParse(schemas.ModelRecordSchema).Text), &sch); err != nil {
			t.Fatal(err)
		}
		for _, f := range sch.Fields {
			avroFields = append(avroFields, f.Name)
		}
	}
	type shownMove struct {
		Alias           string `json:"alias"`
		Action          string `json:"action"`
		FromVersion     int32  `json:"from_version"`
		PreviousVersion int32  `json:"previous_version"`
		By              string `json:"by"`
		Reason          string `json:"reason"`
		At              int64  `json:"at"`
	}
	type shownRecord struct {
		Version int32       `json:"version"`
		Aliases []string    `json:"aliases"`
		Reason  string      `json:"reason"`
		Moves   []shownMove `json:"moves"`
	}
	showJSON := func(args ...string) (shownRecord, int32) {
		t.Helper()
		var shown struct {
			Record  map[string]json.RawMessage `json:"record"`
			Serving int32                      `json:"serving_version"`
		}
		out := must(append([]string{"show", "fraud", "-json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &shown); err != nil {
			t.Fatal(err)
		}
		keys := slices.Sorted(maps.Keys(shown.Record))
		if want := slices.Sorted(slices.Values(avroFields)); !slices.Equal(keys, want) {
			t.Fatalf("show -json record keys %v, want the Avro field names %v:\n%s", keys, want, out)
		}
		b, _ := json.Marshal(shown.Record)
		var rec shownRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		return rec, shown.Serving
	}
	// champion reads the champion alias back in a fresh process.
	champion := func() int32 {
		t.Helper()
		rec, serving := showJSON()
		if !slices.Contains(rec.Aliases, "champion") || serving != rec.Version {
			t.Fatalf("show: champion record %+v, serving v%d", rec, serving)
		}
		return rec.Version
	}
	xgb := "../../scoring/model/testdata/xgboost/"
	feats := "card.f0,card.f1,card.f2,card.f3,card.f4,card.f5"
	if err := run(ctx, []string{"models", "keygen", "-out", filepath.Join(dir, "k")}, io.Discard); err != nil {
		t.Fatal(err)
	}
	must("register", "-model", "fraud", "-artifact", xgb+"binary_logistic_names.json", "-champion", "-reason", "first")
	must("register", "-model", "fraud", "-artifact", xgb+"binary_logistic.json", "-features", feats, "-parent", "1", "-reason", "second")
	must("register", "-model", "fraud", "-artifact", xgb+"binary_logitraw.json", "-features", feats, "-parent", "2", "-reason", "third")
	must("register", "-model", "fraud", "-artifact", xgb+"binary_logistic_base_score.json", "-features", "card.f5,card.f1,card.f2,card.f3,card.f4,card.g0", "-parent", "2", "-reason", "fourth")
	if v := champion(); v != 1 {
		t.Fatalf("champion v%d, want v1", v)
	}

	out := must("promote", "fraud", "2", "-reason", "better AUC", "-by", "alice")
	if want := "fraud champion: v1 -> v2 (promote by alice: better AUC)"; !strings.Contains(out, want) || !strings.Contains(out, "signed") {
		t.Fatalf("promote:\n%s\nwant %q", out, want)
	}
	if v := champion(); v != 2 {
		t.Fatalf("champion v%d after promote, want v2", v)
	}

	// v3's artifact is changed on disk: promote refuses and v2 stays.
	if err := os.WriteFile(filepath.Join(arts, "fraud", "v3.json"), []byte(`{"tampered":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"promote", "fraud", "3", "-reason", "x"}, "refused, fraud champion stays v2"},
		{[]string{"promote", "fraud", "3", "-reason", "x"}, "checksum mismatch"},
		{[]string{"rollback", "fraud", "-to", "v3", "-reason", "x"}, "checksum mismatch"},
		{[]string{"promote", "fraud", "2"}, "-reason is required"},
		{[]string{"promote", "fraud", "9", "-reason", "x"}, "no such model version"},
		{[]string{"promote", "nope", "1", "-reason", "x"}, `no model "nope"`},
		{[]string{"promote", "fraud", "-reason", "x"}, "usage"},
		{[]string{"promote", "fraud", "two", "-reason", "x"}, "want a version number"},
	} {
		if _, err := weir(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if v := champion(); v != 2 {
		t.Fatalf("champion v%d after refusals, want v2", v)
	}

	must("promote", "fraud", "v4", "-reason", "new features", "-by", "bob")
	out = must("rollback", "fraud", "-reason", "v4 scores drifted", "-by", "carol")
	if want := "fraud champion: v4 -> v2 (rollback by carol: v4 scores drifted)"; !strings.Contains(out, want) || !strings.Contains(out, "a rollback from v2 goes to v1") {
		t.Fatalf("rollback:\n%s\nwant %q", out, want)
	}
	if v := champion(); v != 2 {
		t.Fatalf("champion v%d after rollback, want v2", v)
	}
	out = must("rollback", "fraud", "-reason", "v2 too", "-by", "carol")
	if want := "fraud champion: v2 -> v1"; !strings.Contains(out, want) {
		t.Fatalf("second rollback:\n%s\nwant %q", out, want)
	}
	if _, err := weir("rollback", "fraud", "-reason", "again"); err == nil || !strings.Contains(err.Error(), "no earlier holder recorded") || !strings.Contains(err.Error(), "stays v1") {
		t.Fatalf("rollback past the first champion: %v", err)
	}
	out = must("rollback", "fraud", "-to", "4", "-reason", "v4 was fine", "-by", "carol")
	if want := "fraud champion: v1 -> v4"; !strings.Contains(out, want) {
		t.Fatalf("rollback -to:\n%s\nwant %q", out, want)
	}
	if v := champion(); v != 4 {
		t.Fatalf("champion v%d after rollback -to 4, want v4", v)
	}

	out = must("show", "fraud")
	t.Logf("weir models show fraud:\n%s", out)
	if !regexp.MustCompile(`reason +fourth\n`).MatchString(out) || !regexp.MustCompile(`last move +rollback champion v1->v4 by carol \(previous v2\): v4 was fine\n +moved at +20\d\d-`).MatchString(out) {
		t.Fatalf("show does not give v4's own reason and its last move:\n%s", out)
	}
	// The record itself keeps each version's own reason and the last move
	// of each alias it gained.
	for _, c := range []struct {
		version, reason string
		move            shownMove
	}{
		{"4", "fourth", shownMove{Alias: "champion", Action: "rollback", FromVersion: 1, PreviousVersion: 2, By: "carol", Reason: "v4 was fine"}},
		{"2", "second", shownMove{Alias: "champion", Action: "rollback", FromVersion: 4, PreviousVersion: 1, By: "carol", Reason: "v4 scores drifted"}},
		{"1", "first", shownMove{Alias: "champion", Action: "rollback", FromVersion: 2, By: "carol", Reason: "v2 too"}},
	} {
		rec, _ := showJSON(c.version)
		if len(rec.Moves) != 1 || rec.Moves[0].At < time.Now().Add(-time.Hour).UnixMilli() {
			t.Fatalf("show v%s: moves %+v", c.version, rec.Moves)
		}
		rec.Moves[0].At = 0
		if rec.Reason != c.reason || rec.Moves[0] != c.move {
			t.Fatalf("show v%s: reason %q moves %+v, want %q and %+v", c.version, rec.Reason, rec.Moves, c.reason, c.move)
		}
	}
	out = must("history", "fraud")
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(l)
		got = append(got, strings.Join(f[1:], " "))
	}
	want := []string{
		"champion none v1 publish weir models register first",
		"champion v1 v2 promote alice better AUC",
		"champion v2 v4 promote bob new features",
		"champion v4 v2 rollback carol v4 scores drifted",
		"champion v2 v1 rollback carol v2 too",
		"champion v1 v4 rollback carol v4 was fine",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history:\n%s\nwant rows:\n%s", out, strings.Join(want, "\n"))
	}

	out = must("diff", "fraud", "2", "v4")
	for _, want := range []string{"fraud v2 -> v4", "+card.g0 -card.f0 reordered", "parent_version", "reason", "last_move", "sha256"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	var d registry.Diff
	if err := json.Unmarshal([]byte(must("diff", "fraud", "1", "2", "-json")), &d); err != nil {
		t.Fatal(err)
	}
	fields := map[string]registry.FieldDiff{}
	for _, f := range d.Fields {
		fields[f.Field] = f
	}
	if d.A != 1 || d.B != 2 || fields["parent_version"].B != "v1" || fields["sha256"].A == fields["sha256"].B || fields["sha256"].A == "" ||
		!d.Features.Same() || fields["format"] != (registry.FieldDiff{}) {
		t.Fatalf("diff -json: %+v", d)
	}
	if _, err := weir("diff", "fraud", "1", "7"); err == nil || !strings.Contains(err.Error(), "v7") {
		t.Fatalf("diff with a missing version: %v", err)
	}

	// A move written before records had moves overwrote the target's
	// reason with the move's text. v5 is registered ("fifth"), then
	// rewritten as such a writer did (from its show -json, which decodes
	// as a schemas.ModelRecord): show still finds v5's own reason on the
	// topic and the move in its reason, history reads the move, and a
	// rollback goes to the previous holder it names.
	must("register", "-model", "fraud", "-artifact", xgb+"binary_logistic.json", "-features", feats, "-parent", "4", "-reason", "fifth")
	recordOf := func(v string) schemas.ModelRecord {
		t.Helper()
		var shown struct {
			Record schemas.ModelRecord `json:"record"`
		}
		if err := json.Unmarshal([]byte(must("show", "fraud", v, "-json")), &shown); err != nil {
			t.Fatal(err)
		}
		return shown.Record
	}
	v5, v4 := recordOf("5"), recordOf("4")
	if v5.Version != 5 || v5.Reason != "fifth" || v5.SHA256 == "" || v4.Version != 4 || len(v4.Moves) != 1 {
		t.Fatalf("show -json does not decode as a record: v5 %+v v4 %+v", v5, v4)
	}
	v5.Reason, v5.Aliases, v5.Moves = "promote champion v4->v5 by dan: legacy", []string{"champion"}, nil
	v4.Aliases = nil
	src, err := schemas.NewSRClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(ctx, src, schemas.Subject(prefix+".models"), schemas.MustParse(schemas.ModelRecordSchema))
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []schemas.ModelRecord{v5, v4} {
		b, err := serde.Encode(&rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := adm.ProduceSync(ctx, &kgo.Record{Topic: prefix + ".models", Key: []byte(registry.Key("fraud", rec.Version)), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if v := champion(); v != 5 {
		t.Fatalf("champion v%d after the old-style move, want v5", v)
	}
	out = must("show", "fraud")
	if !regexp.MustCompile(`reason +fifth\n +last move +promote champion v4->v5 by dan: legacy\n`).MatchString(out) || strings.Contains(out, "moved at") {
		t.Fatalf("show of an old-style move:\n%s", out)
	}
	out = must("history", "fraud")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(strings.Fields(lines[len(lines)-1])[1:], " ") != "champion v4 v5 promote dan legacy" {
		t.Fatalf("history of an old-style move:\n%s", out)
	}
	out = must("rollback", "fraud", "-reason", "undo the old move", "-by", "erin")
	if want := "fraud champion: v5 -> v4 (rollback by erin: undo the old move)"; !strings.Contains(out, want) || !strings.Contains(out, "a rollback from v4 goes to v2") {
		t.Fatalf("rollback of an old-style move:\n%s\nwant %q", out, want)
	}
}
