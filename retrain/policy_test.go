package retrain

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
)

func TestPolicy(t *testing.T) {
	f := newFixture(t)
	alerts := f.serde(t, f.cfg.AlertsTopic(), schemas.AlertSchema)
	commands := f.serde(t, f.cfg.CommandsTopic(), schemas.CommandSchema)
	clk := &clock{t: time.UnixMilli(1_800_000_000_000)}
	decisions := make(chan Decision, 16)
	p, err := NewPolicy(f.cfg, PolicyOptions{Kafka: f.kafka, Group: "policy-" + f.cfg.Topics.Prefix, Alerts: alerts, Commands: commands,
		Registerer: prometheus.NewRegistry(), Now: clk.Now, OnDecision: func(d Decision) { decisions <- d }})
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)

	since := int64(1_799_999_000_000)
	alert := func(id, rule, state, model string) schemas.Alert {
		return schemas.Alert{AlertID: id, Monitor: "fraud-drift", Rule: rule, State: state, ModelName: model, ModelVersion: 3,
			Metric: "psi", Feature: "score", Value: 0.4321, Threshold: 0.2, Windows: 2, Since: since, At: since + 120_000, Reference: "fraud v3"}
	}

	// Read commands as a scorer of the topic would.
	cons, err := kgo.NewClient(append(f.kafka, kgo.ConsumeTopics(f.cfg.CommandsTopic()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	nextCommand := func() schemas.Command {
		t.Helper()
		fs := cons.PollRecords(ctxT(t), 1)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		rs := fs.Records()
		if len(rs) != 1 {
			t.Fatalf("%d command records", len(rs))
		}
		var c schemas.Command
		if err := commands.Decode(ctxT(t), rs[0].Value, &c); err != nil {
			t.Fatal(err)
		}
		if string(rs[0].Key) != c.ModelName {
			t.Fatalf("command key %q", rs[0].Key)
		}
		return c
	}

	// A firing alert on a listed rule commands a retrain.
	f.produce(t, f.cfg.AlertsTopic(), alerts, alert("a1", "score_drift", schemas.AlertFiring, "fraud"))
	if d := recv(t, decisions); d.Outcome != OutcomeCommand || d.Alert.AlertID != "a1" {
		t.Fatalf("decision %+v", d)
	}
	c := nextCommand()
	if c.CommandID != "retrain-a1" || c.Type != schemas.CommandRetrain || c.ModelName != "fraud" || c.RequestedBy != "policy" ||
		c.RequestedAt != clk.Now().UnixMilli() || c.TrainSince != since-time.Hour.Milliseconds() || c.TrainUntil != 0 || c.TargetVersion != 0 {
		t.Fatalf("command %+v", c)
	}
	for _, want := range []string{"alert a1", "rule score_drift", "monitor fraud-drift", "psi of score", "0.4321 > threshold 0.2", "2 windows", "since 2027-01-15T07:43:20Z", "fraud v3"} {
		if !strings.Contains(c.Reason, want) {
			t.Errorf("reason %q lacks %q", c.Reason, want)
		}
	}

	// Within the cooldown a second firing alert is suppressed; resolved
	// alerts, unlisted rules and other models are ignored.
	clk.Advance(9 * time.Minute)
	f.produce(t, f.cfg.AlertsTopic(), alerts,
		alert("a2", "score_drift", schemas.AlertFiring, "fraud"),
		alert("a3", "score_drift", schemas.AlertResolved, "fraud"),
		alert("a4", "auc_drop", schemas.AlertFiring, "fraud"),
		alert("a5", "score_drift", schemas.AlertFiring, "other"),
	)
	for _, want := range []struct{ id, outcome string }{{"a2", OutcomeCooldown}, {"a3", OutcomeIgnored}, {"a4", OutcomeIgnored}, {"a5", OutcomeIgnored}} {
		if d := recv(t, decisions); d.Alert.AlertID != want.id || d.Outcome != want.outcome || d.Command != nil {
			t.Fatalf("decision %+v, want %s %s", d, want.id, want.outcome)
		}
	}

	// After the cooldown the next firing alert commands again; the
	// commands topic holds nothing in between.
	clk.Advance(time.Minute + time.Millisecond)
	f.produce(t, f.cfg.AlertsTopic(), alerts, alert("a6", "score_drift", schemas.AlertFiring, "fraud"))
	if d := recv(t, decisions); d.Outcome != OutcomeCommand {
		t.Fatalf("decision %+v", d)
	}
	if c := nextCommand(); c.CommandID != "retrain-a6" {
		t.Fatalf("next command %+v, want retrain-a6", c)
	}
	for outcome, want := range map[string]float64{OutcomeCommand: 2, OutcomeCooldown: 1, OutcomeIgnored: 3} {
		if got := testutil.ToFloat64(p.alerts.WithLabelValues(outcome)); got != want {
			t.Errorf("alerts{%s} = %v, want %v", outcome, got, want)
		}
	}
}
