package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, body := range []string{"first\n", "second, longer\n"} {
		if err := Write(path, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != body {
			t.Fatalf("read %q, %v; want %q", b, err, body)
		}
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	// A directory that does not exist: an error, and nothing is written.
	if err := Write(filepath.Join(dir, "nope", "x"), []byte("x"), 0o600); err == nil {
		t.Fatal("no error for a missing directory")
	}
	// A path that is a directory: the rename fails, the temp file goes.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "keep"), nil, 0o644)
	if err := Write(sub, []byte("x"), 0o600); err == nil {
		t.Fatal("replaced a directory")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("temporary files left after a failed rename: %v", ents)
	}
}
