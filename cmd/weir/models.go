package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

// cmdModels is `weir models list|show|history|diff|register|promote|rollback|keygen`.
func cmdModels(ctx context.Context, args []string, stdout io.Writer) error {
	usage := errors.New(`usage: weir models
  list [-model name]
  show <model> [version] [-json]                  a version (default: the champion) and the model's alias timeline
  history <model> [-alias a] [-json]               alias changes: when, from, to, by whom, why
  diff <model> <v1> <v2> [-json]                   what differs between two versions
  register -model name -artifact file [-format f] [-features a.b,c.d] [-key private.pem] [-champion] [-reason why]
  promote <model> <version> -reason why [-alias champion] [-by who]
  rollback <model> [-to version] -reason why [-alias champion] [-by who]
  keygen -out prefix`)
	if len(args) == 0 {
		return usage
	}
	switch args[0] {
	case "list":
		return cmdModelsList(ctx, args[1:], stdout)
	case "show":
		return cmdModelsShow(ctx, args[1:], stdout)
	case "history":
		return cmdModelsHistory(ctx, args[1:], stdout)
	case "diff":
		return cmdModelsDiff(ctx, args[1:], stdout)
	case "register":
		return cmdModelsRegister(ctx, args[1:], stdout)
	case "promote":
		return cmdModelsMove(ctx, registry.ActionPromote, args[1:], stdout)
	case "rollback":
		return cmdModelsMove(ctx, registry.ActionRollback, args[1:], stdout)
	case "keygen":
		return cmdModelsKeygen(args[1:], stdout)
	}
	return usage
}

func cmdModelsList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("models list", flag.ContinueOnError)
	var c common
	c.register(fs)
	only := fs.String("model", "", "only this model")
	if err := parse(fs, args); err != nil {
		return err
	}
	env, models, err := modelsEnv(ctx, &c)
	if err != nil {
		return err
	}
	defer env.Close()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "MODEL\tVERSION\tALIASES\tCREATED\tBY\tPARENT\tAUC\tSHA256\tWHY")
	for _, name := range models.Names() {
		if *only != "" && name != *only {
			continue
		}
		for _, r := range models.List(name) {
			parent := "-"
			if r.ParentVersion > 0 {
				parent = fmt.Sprintf("v%d", r.ParentVersion)
			}
			auc := "-"
			if v, ok := r.Metrics["holdout_auc"]; ok {
				auc = fmt.Sprintf("%.3f", v)
			}
			fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\t%s\t%s\t%.12s\t%s\n", r.Name, r.Version, strings.Join(r.Aliases, ","),
				time.UnixMilli(r.CreatedAt).UTC().Format(time.RFC3339), r.CreatedBy, parent, auc, r.SHA256, r.Reason)
		}
	}
	return nil
}

// cmdModelsRegister publishes an artifact file as the model's next
// version, signed when -key names an ed25519 private key.
func cmdModelsRegister(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("models register", flag.ContinueOnError)
	var c common
	c.register(fs)
	name := fs.String("model", "", "model name (required)")
	art := fs.String("artifact", "", "model file (required): logreg-json, XGBoost JSON (save_model(\"m.json\")) or LightGBM text")
	format := fs.String("format", "", "artifact format: logreg-json, xgboost-json or lightgbm-text (default: detected)")
	features := fs.String("features", "", "comma-separated view.feature names in the model's input order (default: the artifact's feature names)")
	key := fs.String("key", "", "ed25519 private key file (PEM, `weir models keygen`) to sign the artifact with")
	champion := fs.Bool("champion", false, "make the new version the champion")
	reason := fs.String("reason", "", "why this version exists")
	by := fs.String("by", "weir models register", "who or what creates it")
	parent := fs.Int("parent", 0, "parent version (0: none)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" || *art == "" {
		return errors.New("models register: -model and -artifact are required")
	}
	b, err := os.ReadFile(*art)
	if err != nil {
		return fmt.Errorf("-artifact: %w", err)
	}
	rec := schemas.ModelRecord{Name: *name, Format: *format, CreatedBy: *by, Reason: *reason, ParentVersion: int32(*parent)}
	if *features != "" {
		rec.Features = strings.Split(*features, ",")
	}
	if *champion {
		rec.Aliases = []string{registry.Champion}
	}
	var priv ed25519.PrivateKey
	if *key != "" {
		kb, err := os.ReadFile(*key)
		if err != nil {
			return fmt.Errorf("-key: %w", err)
		}
		if priv, err = registry.ParsePrivateKey(kb); err != nil {
			return fmt.Errorf("-key %s: %w", *key, err)
		}
	}
	env, models, err := modelsEnv(ctx, &c)
	if err != nil {
		return err
	}
	defer env.Close()
	if priv != nil {
		if rec.Format == "" {
			rec.Format = model.Detect(b)
		}
		rec.Signature = registry.Sign(priv, rec.Name, rec.Format, b)
	}
	rec, err = models.Publish(ctx, rec, b)
	if err != nil {
		return err
	}
	signed := "unsigned"
	if rec.Signature != "" {
		signed = "signed"
	}
	fmt.Fprintf(stdout, "%s v%d (%s, %d features, %s) sha256 %s at %s\n", rec.Name, rec.Version, rec.Format, len(rec.Features), signed, rec.SHA256, rec.ArtifactURI)
	return nil
}

// cmdModelsKeygen writes an ed25519 key pair: <out>.pem (private, 0600)
// and <out>.pub.pem (for model_registry.public_key).
func cmdModelsKeygen(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("models keygen", flag.ContinueOnError)
	out := fs.String("out", "", "path prefix of the key files (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("models keygen: -out is required")
	}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	privPEM, pubPEM, err := registry.MarshalKeys(priv)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out+".pem", privPEM, 0o600); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	if err := os.WriteFile(*out+".pub.pem", pubPEM, 0o644); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	fmt.Fprintf(stdout, "private key %s.pem (weir models register -key), public key %s.pub.pem (model_registry.public_key)\n", *out, *out)
	return nil
}

// modelsEnv loads the config and returns an Env whose registry reader is
// running and caught up; the caller closes the Env.
func modelsEnv(ctx context.Context, c *common) (*roles.Env, *registry.Registry, error) {
	cfg, err := c.load()
	if err != nil {
		return nil, nil, err
	}
	env, err := roles.NewEnv(cfg, c.logger(io.Discard), "cli")
	if err != nil {
		return nil, nil, err
	}
	models, err := env.Models(ctx)
	if err != nil {
		env.Close()
		return nil, nil, err
	}
	return env, models, nil
}

// parseVersion reads "3" or "v3".
func parseVersion(what, s string) (int32, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(s, "v"), 10, 32)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s %q: want a version number (3 or v3)", what, s)
	}
	return int32(n), nil
}

// whoAmI is the default -by: user@host.
func whoAmI() string {
	u := os.Getenv("USER")
	if u == "" {
		u = "unknown"
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		u += "@" + h
	}
	return strings.NewReplacer(":", "_", "(", "_", ")", "_").Replace(u)
}

// cmdModelsMove is `weir models promote` and `weir models rollback`. They
// move the alias in the registry directly (registry.Promote and
// registry.Rollback), not through the commands topic, so that the change
// is made, verified and visible when the command returns, whether or not
// a trainer runs (whose PROMOTE and ROLLBACK commands call the same
// functions); the record of the version that gains the alias records the
// move, who made it and why, beside its own reason.
func cmdModelsMove(ctx context.Context, action string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("models "+action, flag.ContinueOnError)
	var c common
	c.register(fs)
	alias := fs.String("alias", registry.Champion, "the alias to move")
	reason := fs.String("reason", "", "why (required; recorded in the registry)")
	by := fs.String("by", whoAmI(), "who moves it (recorded)")
	to := fs.String("to", "", "rollback: the version to go back to (default: the one that held the alias before the current holder)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	want := 2
	if action == registry.ActionRollback {
		want = 1
	}
	if len(pos) != want {
		if action == registry.ActionPromote {
			return errors.New("usage: weir models promote <model> <version> -reason why [-alias champion] [-by who]")
		}
		return errors.New("usage: weir models rollback <model> [-to version] -reason why [-alias champion] [-by who]")
	}
	if strings.TrimSpace(*reason) == "" {
		return fmt.Errorf("models %s: -reason is required: say why, it is recorded", action)
	}
	var target int32
	if action == registry.ActionPromote {
		if target, err = parseVersion("version", pos[1]); err != nil {
			return err
		}
	} else if *to != "" {
		if target, err = parseVersion("-to", *to); err != nil {
			return err
		}
	}
	env, models, err := modelsEnv(ctx, &c)
	if err != nil {
		return err
	}
	defer env.Close()
	name := pos[0]
	if len(models.List(name)) == 0 {
		return fmt.Errorf("models %s: no model %q in %s (models: %s)", action, name, env.Cfg.ModelsTopic(), strings.Join(models.Names(), ", "))
	}
	held, _ := models.Alias(name, *alias)
	var m registry.Move
	if action == registry.ActionPromote {
		m, err = registry.Promote(ctx, models, name, *alias, target, *by, *reason)
	} else {
		m, err = registry.Rollback(ctx, models, name, *alias, target, *by, *reason)
	}
	if err != nil {
		return fmt.Errorf("models %s: refused, %s %s stays %s: %w", action, name, *alias, vOrNone(held), err)
	}
	if m.From == m.To {
		fmt.Fprintf(stdout, "%s %s is already v%d: nothing moved (its artifact verifies)\n", name, *alias, m.To)
		return nil
	}
	rec, _ := models.Get(name, m.To)
	signed := "unsigned"
	if rec.Signature != "" {
		signed = "signed"
	}
	fmt.Fprintf(stdout, "%s %s: %s -> v%d (%s by %s: %s)\n", name, *alias, vOrNone(m.From), m.To, m.Action, m.By, m.Why)
	fmt.Fprintf(stdout, "  v%d artifact verified: %s, sha256 %s, %s\n", m.To, rec.Format, rec.SHA256, signed)
	fmt.Fprintf(stdout, "  a rollback from v%d goes to %s\n", m.To, vOrNone(m.Previous))
	return nil
}

func vOrNone(v int32) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprintf("v%d", v)
}

// cmdModelsDiff is `weir models diff <model> <v1> <v2>`.
func cmdModelsDiff(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("models diff", flag.ContinueOnError)
	var c common
	c.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		return errors.New("usage: weir models diff <model> <v1> <v2> [-json]")
	}
	var vs [2]int32
	for i := range vs {
		if vs[i], err = parseVersion("version", pos[1+i]); err != nil {
			return err
		}
	}
	env, models, err := modelsEnv(ctx, &c)
	if err != nil {
		return err
	}
	defer env.Close()
	var recs [2]schemas.ModelRecord
	for i, v := range vs {
		var ok bool
		if recs[i], ok = models.Get(pos[0], v); !ok {
			return fmt.Errorf("models diff: %s v%d: %w", pos[0], v, registry.ErrNoVersion)
		}
	}
	d := registry.DiffRecords(recs[0], recs[1])
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	}
	return d.WriteText(stdout, 100)
}

// cmdModelsHistory is `weir models history <model>`.
func cmdModelsHistory(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("models history", flag.ContinueOnError)
	var c common
	c.register(fs)
	alias := fs.String("alias", "", "only this alias")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: weir models history <model> [-alias a] [-json]")
	}
	env, _, err := modelsEnv(ctx, &c)
	if err != nil {
		return err
	}
	defer env.Close()
	changes, _, err := modelHistory(ctx, env, pos[0], *alias)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(changes)
	}
	return writeHistory(stdout, changes)
}

// modelHistory reads the registry topic and returns the alias changes of
// a model (of one alias, when alias is set) and the records read.
func modelHistory(ctx context.Context, env *roles.Env, name, alias string) ([]registry.Change, []registry.TopicRecord, error) {
	serde, err := env.Serde(ctx, env.Cfg.ModelsTopic(), schemas.ModelRecordSchema)
	if err != nil {
		return nil, nil, err
	}
	recs, err := registry.ReadTopic(ctx, env.Kafka, env.Cfg.ModelsTopic(), serde)
	if err != nil {
		return nil, nil, err
	}
	var out []registry.Change
	for _, ch := range registry.History(recs, name) {
		if alias == "" || ch.Alias == alias {
			out = append(out, ch)
		}
	}
	return out, recs, nil
}

func writeHistory(w io.Writer, changes []registry.Change) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tALIAS\tFROM\tTO\tACTION\tBY\tWHY")
	for _, ch := range changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ch.At.UTC().Format(time.RFC3339), ch.Alias, vOrNone(ch.From), vOrNone(ch.To),
			ch.Action, dash(ch.By), dash(strings.ReplaceAll(ch.Reason, "\n", " ")))
	}
	if len(changes) == 0 {
		fmt.Fprintln(tw, "(no alias changes on the topic)")
	}
	return tw.Flush()
}

// cmdModelsShow is `weir models show <model> [version]`: one version's
// record in full (default: the champion's) and the model's alias
// timeline.
func cmdModelsShow(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("models show", flag.ContinueOnError)
	var c common
	c.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return errors.New("usage: weir models show <model> [version] [-json]")
	}
	var version int32
	if len(pos) == 2 {
		if version, err = parseVersion("version", pos[1]); err != nil {
			return err
		}
	}
	env, models, err := modelsEnv(ctx, &c)
	if err != nil {
		return err
	}
	defer env.Close()
	name := pos[0]
	if version == 0 {
		v, ok := models.Alias(name, registry.Champion)
		if !ok {
			return fmt.Errorf("models show: %s has no champion (models: %s); name a version", name, strings.Join(models.Names(), ", "))
		}
		version = v
	}
	rec, ok := models.Get(name, version)
	if !ok {
		return fmt.Errorf("models show: %s v%d: %w", name, version, registry.ErrNoVersion)
	}
	changes, recs, err := modelHistory(ctx, env, name, "")
	if err != nil {
		return err
	}
	// The record's reason is why the version was created, except in a
	// record written before moves had their own field, whose reason a
	// move overwrote: the version's first record on the topic, when not
	// compacted away, still has it.
	created := rec.Reason
	if !registry.OwnReason(rec) {
		created = "(compacted away)"
		for _, tr := range recs {
			if tr.Record != nil && tr.Record.Name == name && tr.Record.Version == version {
				if registry.OwnReason(*tr.Record) {
					created = tr.Record.Reason
				}
				break
			}
		}
	}
	serving := int32(0)
	if l, ok := models.Champion(name); ok {
		serving = l.Record.Version
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		// The record's JSON names are its Avro field names.
		return enc.Encode(struct {
			Record  schemas.ModelRecord `json:"record"`
			Serving int32               `json:"serving_version"`
			History []registry.Change   `json:"history"`
		}{rec, serving, changes})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s v%d\n", rec.Name, rec.Version)
	fmt.Fprintf(tw, "  aliases\t%s\n", dash(strings.Join(rec.Aliases, ",")))
	fmt.Fprintf(tw, "  serving\t%s (the champion whose artifact this process verified)\n", vOrNone(serving))
	fmt.Fprintf(tw, "  format\t%s, %d features\n", rec.Format, len(rec.Features))
	fmt.Fprintf(tw, "  features\t%s\n", strings.Join(rec.Features, ", "))
	fmt.Fprintf(tw, "  views\t%s\n", dash(strings.Join(rec.Views, ", ")))
	fmt.Fprintf(tw, "  artifact\t%s\n", rec.ArtifactURI)
	fmt.Fprintf(tw, "  sha256\t%s\n", rec.SHA256)
	sig := "unsigned"
	if rec.Signature != "" {
		sig = "signed " + rec.Signature
	}
	fmt.Fprintf(tw, "  signature\t%s\n", sig)
	fmt.Fprintf(tw, "  created\t%s by %s\n", time.UnixMilli(rec.CreatedAt).UTC().Format(time.RFC3339), dash(rec.CreatedBy))
	fmt.Fprintf(tw, "  parent\t%s\n", vOrNone(rec.ParentVersion))
	fmt.Fprintf(tw, "  reason\t%s\n", dash(created))
	if m, ok := registry.LastMove(rec); ok {
		fmt.Fprintf(tw, "  last move\t%s\n", m)
		if !m.At.IsZero() {
			fmt.Fprintf(tw, "  moved at\t%s\n", m.At.UTC().Format(time.RFC3339))
		}
	}
	names := make([]string, 0, len(rec.Metrics))
	for k := range rec.Metrics {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		label := ""
		if i == 0 {
			label = "metrics"
		}
		fmt.Fprintf(tw, "  %s\t%s = %g\n", label, k, rec.Metrics[k])
	}
	fmt.Fprintf(tw, "  training set\t%s\n", dash(rec.TrainingSet))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s alias timeline (what %s still holds):\n", name, env.Cfg.ModelsTopic())
	return writeHistory(stdout, changes)
}
