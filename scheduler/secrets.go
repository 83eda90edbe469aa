package scheduler

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/internal/atomicfile"
)

// Sealer encrypts secrets at rest with AES-256-GCM under the server's key.
// The repository and name are the additional data, so a sealed value
// copied to another secret's row does not open.
type Sealer struct {
	aead cipher.AEAD
}

// LoadKey reads the server's key file (64 hex digits), creating it with a
// new random key, readable by its owner only, if it does not exist.
func LoadKey(path string) (*Sealer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		rand.Read(key)
		if err := atomicfile.Write(filepath.Dir(path), path, []byte(hex.EncodeToString(key)+"\n")); err != nil {
			return nil, fmt.Errorf("secret key: %w", err)
		}
		return NewSealer(key)
	}
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret key %s: readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("secret key %s: want 64 hex digits", path)
	}
	return NewSealer(key)
}

// NewSealer uses a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

func aad(repo, name string) []byte { return []byte(repo + "\x00" + name) }

// Seal encrypts a secret's value: a random nonce, then the ciphertext.
func (s *Sealer) Seal(repo, name, value string) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, []byte(value), aad(repo, name))
}

// Open decrypts what Seal made for the same repository and name.
func (s *Sealer) Open(repo, name string, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", fmt.Errorf("secret %s of %s: sealed value too short", name, repo)
	}
	v, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad(repo, name))
	if err != nil {
		return "", fmt.Errorf("secret %s of %s: cannot decrypt (wrong key file?)", name, repo)
	}
	return string(v), nil
}
