package registry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
	"github.com/weirhq/weir/scoring/model"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log sink safe for Run's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	seeds []string
	topic string
	serde *schemas.Serde
	blobs *Blobs
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	seeds, _ := testenv.Kafka(t)
	topic := testenv.Name("weirtest.models")
	adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	resp, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}

	srv, err := registry.Open("")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	sr, err := schemas.NewSRClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(ctx, sr, schemas.Subject(topic), schemas.MustParse(schemas.ModelRecordSchema))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := NewBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{seeds: seeds, topic: topic, serde: serde, blobs: blobs}
}

type swap struct{ from, to int32 }

type started struct {
	*Registry
	log   *syncBuffer
	prom  *prometheus.Registry
	mu    sync.Mutex
	swaps []swap
}

func (s *started) swapped() []swap {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]swap(nil), s.swaps...)
}

// start runs a Registry on the fixture's topic until the test ends.
func (f *fixture) start(t *testing.T) *started {
	t.Helper()
	return f.startWith(t, nil)
}

// startWith is start with Options changed by opt (when not nil).
func (f *fixture) startWith(t *testing.T, opt func(*Options)) *started {
	t.Helper()
	s := &started{log: &syncBuffer{}, prom: prometheus.NewRegistry()}
	o := Options{
		Kafka: []kgo.Opt{kgo.SeedBrokers(f.seeds...)}, Topic: f.topic, Serde: f.serde, Blobs: f.blobs,
		Logger:     slog.New(slog.NewTextHandler(s.log, nil)),
		Registerer: s.prom,
		Now:        func() time.Time { return time.UnixMilli(1_700_000_000_000) },
		OnSwap: func(name string, from, to int32) {
			s.mu.Lock()
			s.swaps = append(s.swaps, swap{from, to})
			s.mu.Unlock()
		},
	}
	if opt != nil {
		opt(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Registry = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		r.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// artifact returns a valid artifact whose bias tells versions apart.
func artifact(t *testing.T, bias float64) []byte {
	t.Helper()
	m := &model.LogReg{
		Format: model.Format, Name: "fraud",
		Features:   []string{"card.amount", "card.count"},
		Transforms: []string{model.TransformLog1p, ""},
		Mean:       []float64{1, 2}, Std: []float64{1, 1}, Weights: []float64{0.5, 0.25}, Bias: bias,
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func champion(t *testing.T, r *started) int32 {
	t.Helper()
	l, ok := r.Champion("fraud")
	if !ok {
		t.Fatal("no champion")
	}
	if l.Model == nil || l.Model.(*model.LogReg).Name != "fraud" {
		t.Fatalf("champion v%d has no parsed model", l.Record.Version)
	}
	return l.Record.Version
}

func aliases(t *testing.T, r *started, v int32) []string {
	t.Helper()
	rec, ok := r.Get("fraud", v)
	if !ok {
		t.Fatalf("no v%d", v)
	}
	return rec.Aliases
}

func TestRegistryLifecycle(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	ctx := ctxT(t)

	if _, ok := r.Champion("fraud"); ok {
		t.Fatal("champion before any publish")
	}

	// v1, champion.
	a1 := artifact(t, -1)
	rec1, err := r.Publish(ctx, schemas.ModelRecord{Name: "fraud", CreatedBy: "bootstrap", Reason: "first", Aliases: []string{Champion}}, a1)
	if err != nil {
		t.Fatal(err)
	}
	if rec1.Version != 1 || rec1.SHA256 != model.SHA256(a1) || rec1.CreatedAt != 1_700_000_000_000 || rec1.Format != model.Format {
		t.Fatalf("published %+v", rec1)
	}
	if want := "file://" + f.blobs.Path("fraud", 1, model.Format); rec1.ArtifactURI != want {
		t.Fatalf("artifact_uri %s, want %s", rec1.ArtifactURI, want)
	}
	if b, err := os.ReadFile(f.blobs.Path("fraud", 1, model.Format)); err != nil || !bytes.Equal(b, a1) {
		t.Fatalf("blob: %v", err)
	}
	if got := champion(t, r); got != 1 {
		t.Fatalf("champion v%d, want v1", got)
	}

	// v2, champion: swap, and v1 loses the alias.
	rec2, err := r.Publish(ctx, schemas.ModelRecord{Name: "fraud", CreatedBy: "retrain", Reason: "drift", ParentVersion: 1, Aliases: []string{Champion}}, artifact(t, -2))
	if err != nil {
		t.Fatal(err)
	}
	if rec2.Version != 2 {
		t.Fatalf("second publish got v%d", rec2.Version)
	}
	if got := champion(t, r); got != 2 {
		t.Fatalf("champion v%d, want v2", got)
	}
	if a := aliases(t, r, 1); len(a) != 0 {
		t.Fatalf("v1 aliases %v after v2 became champion", a)
	}
	l, _ := r.Champion("fraud")
	if got, want := l.Model.Score([]float64{3, 4}), mustParse(t, artifact(t, -2)).Score([]float64{3, 4}); got != want {
		t.Fatalf("champion scores %v, v2 artifact scores %v", got, want)
	}

	// Publishing an existing version is refused.
	if _, err := r.Publish(ctx, schemas.ModelRecord{Name: "fraud", Version: 2}, artifact(t, 0)); !errors.Is(err, ErrVersionExists) {
		t.Fatalf("re-publish v2: err = %v", err)
	}

	// v3 written as champion with a tampered artifact: refused, v2 serves.
	a3 := artifact(t, -3)
	uri, err := f.blobs.Put("fraud", 3, model.Format, bytes.Replace(a3, []byte("0.25"), []byte("9.25"), 1))
	if err != nil {
		t.Fatal(err)
	}
	rec3 := schemas.ModelRecord{Name: "fraud", Version: 3, Format: model.Format, Features: []string{"card.amount", "card.count"},
		ArtifactURI: uri, SHA256: model.SHA256(a3), CreatedBy: "attacker", Reason: "tampered", ParentVersion: 2, Aliases: []string{Champion}}
	prev, _ := r.Get("fraud", 2)
	prev = clone(prev)
	prev.Aliases = nil
	r.produceRaw(t, ctx, rec3, prev)
	if v, _ := r.Alias("fraud", Champion); v != 3 {
		t.Fatalf("champion alias at v%d, want v3 (per the records)", v)
	}
	if got := champion(t, r); got != 2 {
		t.Fatalf("champion v%d after a tampered v3, want v2 to keep serving", got)
	}
	if n := testutil.ToFloat64(r.m.refused.WithLabelValues("fraud", "checksum")); n != 1 {
		t.Fatalf("refused{checksum} = %v, want 1", n)
	}
	if log := r.log.String(); !strings.Contains(log, "champion artifact refused") || !strings.Contains(log, "checksum mismatch") || !strings.Contains(log, "serving_version=2") {
		t.Fatalf("log does not explain the refusal:\n%s", log)
	}

	// Moving the alias to v3 explicitly is refused too.
	if _, err := Promote(ctx, r, "fraud", Champion, 3, "test", "promote tampered"); !errors.Is(err, ErrChecksum) {
		t.Fatalf("MoveAlias to a tampered version: err = %v", err)
	}

	// Rollback to v1.
	if _, err := Rollback(ctx, r, "fraud", Champion, 1, "oncall", "v2 degraded"); err != nil {
		t.Fatal(err)
	}
	back, _ := r.Get("fraud", 1)
	if m, ok := MoveOf(back, Champion); back.Reason != "first" || back.CreatedBy != "bootstrap" || !ok || m.From != 3 || m.Why != "v2 degraded" {
		t.Fatalf("rollback record %+v", back)
	}
	if got := champion(t, r); got != 1 {
		t.Fatalf("champion v%d after rollback, want v1", got)
	}
	for _, v := range []int32{2, 3} {
		if a := aliases(t, r, v); len(a) != 0 {
			t.Fatalf("v%d aliases %v after rollback", v, a)
		}
	}
	if got, want := r.swapped(), []swap{{0, 1}, {1, 2}, {2, 1}}; !equalSwaps(got, want) {
		t.Fatalf("swaps %v, want %v", got, want)
	}
	if g := testutil.ToFloat64(r.m.champion.WithLabelValues("fraud")); g != 1 {
		t.Fatalf("champion gauge %v", g)
	}

	list := r.List("fraud")
	if len(list) != 3 {
		t.Fatalf("List: %d versions", len(list))
	}
	for i, want := range []struct {
		by, reason string
		parent     int32
	}{{"bootstrap", "first", 0}, {"retrain", "drift", 1}, {"attacker", "tampered", 2}} {
		if rec := list[i]; rec.Version != int32(i+1) || rec.CreatedBy != want.by || rec.Reason != want.reason || rec.ParentVersion != want.parent {
			t.Errorf("List[%d] = v%d by %q reason %q parent %d", i, rec.Version, rec.CreatedBy, rec.Reason, rec.ParentVersion)
		}
	}

	// A second registry replaying the topic reaches the same view.
	r2 := f.start(t)
	if got := champion(t, r2); got != 1 {
		t.Fatalf("replayed champion v%d, want v1", got)
	}
	if got := len(r2.List("fraud")); got != 3 {
		t.Fatalf("replayed %d versions", got)
	}
	if got := r2.swapped(); !equalSwaps(got, []swap{{0, 1}}) && !equalSwaps(got, []swap{{0, 1}, {1, 2}, {2, 1}}) {
		t.Fatalf("replay swaps %v", got)
	}
}

func TestRefusedFirstChampionServesNothing(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	ctx := ctxT(t)
	bad := []byte(`{"format":"logreg-json","name":"fraud"}`)
	uri, err := f.blobs.Put("fraud", 1, model.Format, bad)
	if err != nil {
		t.Fatal(err)
	}
	r.produceRaw(t, ctx, schemas.ModelRecord{Name: "fraud", Version: 1, Format: model.Format, ArtifactURI: uri, SHA256: model.SHA256(bad), Aliases: []string{Champion}})
	if _, ok := r.Champion("fraud"); ok {
		t.Fatal("an unparsable artifact serves")
	}
	if n := testutil.ToFloat64(r.m.refused.WithLabelValues("fraud", "parse")); n != 1 {
		t.Fatalf("refused{parse} = %v", n)
	}
	// A valid v2 then swaps in from nothing.
	if _, err := r.Publish(ctx, schemas.ModelRecord{Name: "fraud", Aliases: []string{Champion}}, artifact(t, 0)); err != nil {
		t.Fatal(err)
	}
	if got := champion(t, r); got != 2 {
		t.Fatalf("champion v%d", got)
	}
}

func TestPublishValidates(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	ctx := ctxT(t)
	for _, c := range []struct {
		name string
		rec  schemas.ModelRecord
		art  []byte
		want string
	}{
		{"bad name", schemas.ModelRecord{Name: "../x"}, artifact(t, 0), "model name"},
		{"other model", schemas.ModelRecord{Name: "other"}, artifact(t, 0), `artifact is of model "fraud"`},
		{"features", schemas.ModelRecord{Name: "fraud", Features: []string{"a.b"}}, artifact(t, 0), "artifact has features [card.amount card.count], record says [a.b]"},
		{"garbage", schemas.ModelRecord{Name: "fraud", Format: model.FormatLogReg}, []byte("{"), "model: parse"},
		{"undetected", schemas.ModelRecord{Name: "fraud"}, []byte("{"), "no format given"},
		{"unknown format", schemas.ModelRecord{Name: "fraud", Format: "onnx"}, artifact(t, 0), `unknown format "onnx"`},
		{"xgboost names", schemas.ModelRecord{Name: "fraud", Features: []string{"a.b"}}, testModel(t, "xgboost/binary_logistic_names.json"), "artifact has features [card.f0"},
		{"xgboost unnamed", schemas.ModelRecord{Name: "fraud"}, testModel(t, "xgboost/binary_logistic.json"), "does not name its"},
		{"lightgbm columns", schemas.ModelRecord{Name: "fraud", Features: []string{"a.b"}}, testModel(t, "lightgbm/binary.txt"), "artifact takes 6 features, record lists 1"},
		{"lightgbm unnamed", schemas.ModelRecord{Name: "fraud"}, testModel(t, "lightgbm/binary.txt"), "does not name its 6 features"},
	} {
		if _, err := r.Publish(ctx, c.rec, c.art); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	if len(r.List("fraud")) != 0 {
		t.Fatal("a refused publish was recorded")
	}
}

func TestChampionDoesNotAllocate(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	if _, err := r.Publish(ctxT(t), schemas.ModelRecord{Name: "fraud", Aliases: []string{Champion}}, artifact(t, 0)); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { r.Champion("fraud") }); n != 0 {
		t.Fatalf("Champion allocates %v", n)
	}
}

func TestReadURI(t *testing.T) {
	for _, uri := range []string{"http://x/y", "gs://b/k", "s3://b", "s3:///k", "file://remote/x", "::"} {
		if _, err := Read(uri); err == nil {
			t.Errorf("Read(%q) succeeded", uri)
		}
	}
	b, err := NewBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	uri, err := b.Put("m", 7, model.Format, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Read(uri); err != nil || string(got) != "x" {
		t.Fatalf("Read(%s) = %q, %v", uri, got, err)
	}
}

// produceRaw writes records as another writer would, bypassing Publish's
// checks, and waits until Run applied them.
func (s *started) produceRaw(t *testing.T, ctx context.Context, recs ...schemas.ModelRecord) {
	t.Helper()
	for i := range recs {
		normalize(&recs[i])
	}
	if err := s.produce(ctx, recs); err != nil {
		t.Fatal(err)
	}
}

func mustParse(t *testing.T, b []byte) *model.LogReg {
	m, err := model.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func equalSwaps(a, b []swap) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// testModel reads a golden model of scoring/model/testdata.
func testModel(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "model", "testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBlobStores: a directory path, a file:// URL and mem:// store and
// read back artifacts; a registry on mem:// serves what it published.
func TestBlobStores(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	for _, where := range []string{dir, "file://" + filepath.ToSlash(dir), "mem://"} {
		b, err := OpenBlobs(ctx, where)
		if err != nil {
			t.Fatal(err)
		}
		uri, err := b.Put("m", 7, model.FormatLightGBMText, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(uri, "/m/v7.txt") {
			t.Errorf("%s: uri %s", where, uri)
		}
		if got, err := b.Read(ctx, uri); err != nil || string(got) != "x" {
			t.Errorf("%s: Read(%s) = %q, %v", where, uri, got, err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"s3://bucket/some/path", "file://host/dir", "nope://x"} {
		if _, err := OpenBlobs(ctx, bad); err == nil {
			t.Errorf("OpenBlobs(%q) succeeded", bad)
		}
	}

	f := newFixture(t)
	mem, err := OpenBlobs(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	f.blobs = mem
	r := f.start(t)
	rec, err := r.Publish(ctx, schemas.ModelRecord{Name: "fraud", Aliases: []string{Champion}}, artifact(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if rec.ArtifactURI != "mem:///fraud/v1.json" {
		t.Fatalf("artifact uri %s", rec.ArtifactURI)
	}
	if v := champion(t, r); v != 1 {
		t.Fatalf("champion v%d", v)
	}
}

// TestServingAliases checks that the aliases Options.Aliases names are
// verified and served like the champion, each on its own: a refused
// artifact keeps the alias's previous version serving, an alias on the
// champion's artifact shares its loaded model, an alias that is not named
// is not loaded, and an alias removed from every version stops serving.
func TestServingAliases(t *testing.T) {
	f := newFixture(t)
	r := f.startWith(t, func(o *Options) { o.Aliases = map[string][]string{"fraud": {"challenger", "blue"}} })
	ctx := ctxT(t)
	serving := func(alias string) int32 {
		t.Helper()
		l, ok := r.Serving("fraud", alias)
		if !ok {
			return 0
		}
		if l.Model == nil || l.Model.(*model.LogReg).Bias != -float64(l.Record.Version) {
			t.Fatalf("%s serves v%d with the wrong model %+v", alias, l.Record.Version, l.Model)
		}
		return l.Record.Version
	}
	publish := func(v int32, alias string) {
		t.Helper()
		rec, err := r.Publish(ctx, schemas.ModelRecord{Name: "fraud", Aliases: []string{alias}}, artifact(t, -float64(v)))
		if err != nil || rec.Version != v {
			t.Fatalf("publish v%d: %v (got v%d)", v, err, rec.Version)
		}
	}
	publish(1, Champion)
	publish(2, "challenger")
	publish(3, "other") // not named in Options.Aliases: recorded, not loaded
	if c, ch, b := serving(Champion), serving("challenger"), serving("blue"); c != 1 || ch != 2 || b != 0 {
		t.Fatalf("champion v%d challenger v%d blue v%d, want 1, 2, none", c, ch, b)
	}
	if v, ok := r.Alias("fraud", "other"); !ok || v != 3 {
		t.Fatalf("alias other at v%d %v", v, ok)
	}
	if _, ok := r.Serving("fraud", "other"); ok {
		t.Fatal("an alias not in Options.Aliases serves")
	}

	// A tampered v4 as challenger: refused, v2 keeps serving as challenger.
	a4 := artifact(t, -4)
	uri, err := f.blobs.Put("fraud", 4, model.Format, bytes.Replace(a4, []byte("0.25"), []byte("9.25"), 1))
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := r.Get("fraud", 2)
	prev = clone(prev)
	prev.Aliases = nil
	r.produceRaw(t, ctx, schemas.ModelRecord{Name: "fraud", Version: 4, Format: model.Format, Features: []string{"card.amount", "card.count"},
		ArtifactURI: uri, SHA256: model.SHA256(a4), Aliases: []string{"challenger"}}, prev)
	if v, _ := r.Alias("fraud", "challenger"); v != 4 {
		t.Fatalf("challenger alias at v%d, want v4 (per the records)", v)
	}
	if got := serving("challenger"); got != 2 {
		t.Fatalf("challenger serves v%d after a tampered v4, want v2", got)
	}
	if n := testutil.ToFloat64(r.m.refused.WithLabelValues("fraud", "checksum")); n != 1 {
		t.Fatalf("refused{checksum} = %v, want 1", n)
	}
	if log := r.log.String(); !strings.Contains(log, "challenger artifact refused") || !strings.Contains(log, "alias=challenger") {
		t.Fatalf("log does not explain the refusal:\n%s", log)
	}
	if got := serving(Champion); got != 1 {
		t.Fatalf("champion v%d, want v1 untouched", got)
	}

	// blue on the champion's version shares its loaded model.
	if _, err := Promote(ctx, r, "fraud", "blue", 1, "test", "ab"); err != nil {
		t.Fatal(err)
	}
	c, _ := r.Serving("fraud", Champion)
	b, ok := r.Serving("fraud", "blue")
	if !ok || b.Record.Version != 1 || b.Model != c.Model {
		t.Fatalf("blue %+v does not share the champion's model", b)
	}

	// A valid challenger v5, then the alias removed from every version.
	publish(5, "challenger")
	if got := serving("challenger"); got != 5 {
		t.Fatalf("challenger v%d, want v5", got)
	}
	if g := testutil.ToFloat64(r.m.serving.WithLabelValues("fraud", "challenger")); g != 5 {
		t.Fatalf("serving gauge %v, want 5", g)
	}
	var drop []schemas.ModelRecord
	for _, rec := range r.List("fraud") {
		if slices.Contains(rec.Aliases, "challenger") {
			rec = clone(rec)
			rec.Aliases = slices.DeleteFunc(rec.Aliases, func(a string) bool { return a == "challenger" })
			drop = append(drop, rec)
		}
	}
	r.produceRaw(t, ctx, drop...)
	if _, ok := r.Serving("fraud", "challenger"); ok {
		t.Fatal("challenger serves after its alias was removed")
	}
	if g := testutil.ToFloat64(r.m.serving.WithLabelValues("fraud", "challenger")); g != 0 {
		t.Fatalf("serving gauge %v after removal, want 0", g)
	}
	if got, want := r.swapped(), []swap{{0, 1}}; !equalSwaps(got, want) {
		t.Fatalf("champion swaps %v, want %v: other aliases must not call OnSwap", got, want)
	}
}
