package serve

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"
)

// LoadHostKey reads the server's host key at path, making a new Ed25519
// key there (mode 0600) when there is none, so that clients see the same
// host key across restarts. A key that group or others may read is
// refused, as sshd refuses it: it may have been copied.
func LoadHostKey(path string) (signer gossh.Signer, created bool, err error) {
	if path == "" {
		return nil, false, errors.New("serve: no host key path: set [serve] host_key or pass --host-key")
	}
	data, err := readHostKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createHostKey(path); err != nil {
			return nil, false, err
		}
		created = true
		data, err = readHostKey(path)
	}
	if err != nil {
		return nil, false, err
	}
	signer, err = gossh.ParsePrivateKey(data)
	if err != nil {
		var missing *gossh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, false, fmt.Errorf("serve: host key %s is encrypted: the server cannot ask for its passphrase; give it an unencrypted key (mode 0600)", path)
		}
		return nil, false, fmt.Errorf("serve: host key %s: %w", path, err)
	}
	return signer, created, nil
}

func readHostKey(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("serve: host key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("serve: host key %s may be read by others (mode %04o): run 'chmod 600 %s'", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("serve: host key: %w", err)
	}
	return data, nil
}

// createHostKey writes a new key without ever replacing one: the key is
// written to a temporary file and linked into place, so two servers
// starting at once keep one key between them.
func createHostKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("serve: host key directory: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("serve: generate host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "ckanops serve host key")
	if err != nil {
		return fmt.Errorf("serve: encode host key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("serve: write host key: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("serve: write host key: %w", err)
	}
	if _, err := tmp.Write(pem.EncodeToMemory(block)); err != nil {
		tmp.Close()
		return fmt.Errorf("serve: write host key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("serve: write host key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("serve: write host key: %w", err)
	}
	if err := os.Link(name, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("serve: write host key %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
