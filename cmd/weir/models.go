package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

// cmdModels is `weir models list|register|keygen`.
func cmdModels(ctx context.Context, args []string, stdout io.Writer) error {
	usage := errors.New("usage: weir models list [-model name] | register -model name -artifact file [-format f] [-features a.b,c.d] [-key private.pem] [-champion] [-reason why] | keygen -out prefix")
	if len(args) == 0 {
		return usage
	}
	switch args[0] {
	case "list":
		return cmdModelsList(ctx, args[1:], stdout)
	case "register":
		return cmdModelsRegister(ctx, args[1:], stdout)
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
	cfg, err := c.load()
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, c.logger(io.Discard), "cli")
	if err != nil {
		return err
	}
	defer env.Close()
	models, err := env.Models(ctx)
	if err != nil {
		return err
	}
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
	cfg, err := c.load()
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, c.logger(io.Discard), "cli")
	if err != nil {
		return err
	}
	defer env.Close()
	models, err := env.Models(ctx)
	if err != nil {
		return err
	}
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
