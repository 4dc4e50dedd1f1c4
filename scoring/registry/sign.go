package registry

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
)

// ErrSignature: a record's signature is missing or does not verify with
// the configured public key.
var ErrSignature = errors.New("artifact signature invalid")

// signed is the message a signature covers: the model's name, the
// artifact's format and its SHA-256, so a signed artifact cannot be
// served as another model or read as another format. The version is not
// covered: the same signed artifact may be published again.
func signed(name, format, sha string) []byte {
	return []byte("weir-model-signature-v1\n" + name + "\n" + format + "\n" + sha + "\n")
}

// Sign returns the record signature (base64 ed25519) of an artifact of
// model name in format.
func Sign(key ed25519.PrivateKey, name, format string, artifact []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, signed(name, format, model.SHA256(artifact))))
}

// checkSignature verifies rec.Signature over rec's name, format and
// SHA-256 (checked against the bytes separately).
func checkSignature(rec schemas.ModelRecord, pub ed25519.PublicKey) error {
	if rec.Signature == "" {
		return fmt.Errorf("%w: the record is unsigned and a public key is configured", ErrSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(rec.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: not a base64 ed25519 signature", ErrSignature)
	}
	if !ed25519.Verify(pub, signed(rec.Name, rec.Format, rec.SHA256), sig) {
		return fmt.Errorf("%w: it does not verify with the configured public key", ErrSignature)
	}
	return nil
}

// ParsePublicKey reads an ed25519 public key in PEM ("PUBLIC KEY", PKIX:
// `openssl pkey -pubout` or `weir models keygen`).
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\"")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 public key", k)
	}
	return pub, nil
}

// ParsePrivateKey reads an ed25519 private key in PEM ("PRIVATE KEY",
// PKCS #8: `openssl genpkey -algorithm ed25519` or `weir models keygen`).
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\"")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 private key", k)
	}
	return priv, nil
}

// MarshalKeys returns a key pair in the PEM forms ParsePrivateKey and
// ParsePublicKey read.
func MarshalKeys(priv ed25519.PrivateKey) (privPEM, pubPEM []byte, err error) {
	p, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	q, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: q}), nil
}
