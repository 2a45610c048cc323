package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultPGRestore is the pg_restore Verify runs when given none.
const DefaultPGRestore = "pg_restore"

// VerifyReport is what Verify found, file by file.
type VerifyReport struct {
	Dir      string      `json:"dir"`
	Manifest *Manifest   `json:"manifest"`
	Files    []FileCheck `json:"files"`
	OK       bool        `json:"ok"` // every file is OK
}

// FileCheck is the verdict on one file of a snapshot.
type FileCheck struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"` // what is wrong, when not OK
}

// Verify checks the snapshot in dir against its manifest: each file's size
// and SHA-256 (every file of a directory dump); that pg_restore
// (pgRestore, default "pg_restore") lists the table of contents of each
// dump (of a directory dump, on its toc.dat's check); that the storage archive reads to its
// end. Problems go into the report; the error is for a snapshot that
// cannot be checked at all (no manifest, a manifest that does not load)
// or a cancelled ctx.
func Verify(ctx context.Context, dir string, pgRestore string) (*VerifyReport, error) {
	m, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if pgRestore == "" {
		pgRestore = DefaultPGRestore
	}
	r := &VerifyReport{Dir: dir, Manifest: m, Files: []FileCheck{}, OK: true}
	buf := make([]byte, copyBufferSize)
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return r, fmt.Errorf("snapshot: verify %s: %w", dir, err)
		}
		var problems []string
		if f.Kind == KindTree {
			var tree *Tree
			for _, st := range m.Storages {
				if st.File == f.Name {
					tree = st.Tree
				}
			}
			problems = verifyTree(ctx, filepath.Join(dir, f.Name), tree, buf)
		} else {
			problems = verifyFile(ctx, filepath.Join(dir, f.Name), f, pgRestore, buf)
		}
		// A directory dump is listed once, on its table of contents.
		if f.Kind == KindPGDumpDir && f.Name == DumpDirName(f.Source)+"/"+dumpTOCName && len(problems) == 0 {
			if p := listDump(ctx, pgRestore, filepath.Join(dir, DumpDirName(f.Source))); p != "" {
				problems = append(problems, p)
			}
			if extra := unlistedDumpFiles(dir, m, f.Source); len(extra) > 0 {
				problems = append(problems, fmt.Sprintf("%s holds files the manifest does not list: %s", DumpDirName(f.Source), summarise(extra, 5, "")))
			}
		}
		c := FileCheck{Name: f.Name, OK: len(problems) == 0, Problem: strings.Join(problems, "; ")}
		r.Files = append(r.Files, c)
		r.OK = r.OK && c.OK
	}
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("snapshot: verify %s: %w", dir, err)
	}
	return r, nil
}

// verifyFile returns what is wrong with one file, nothing when it is OK.
// The file is read once: hashed as it is read, and, for the archive, read
// through archive/tar on the way.
func verifyFile(ctx context.Context, path string, f File, pgRestore string, buf []byte) []string {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []string{"missing"}
	}
	if err != nil {
		return []string{fmt.Sprintf("cannot open: %v", unwrapPath(err))}
	}
	defer fh.Close()
	var problems []string
	if fi, err := fh.Stat(); err != nil {
		return []string{fmt.Sprintf("cannot stat: %v", unwrapPath(err))}
	} else if fi.Size() != f.Size {
		problems = append(problems, fmt.Sprintf("size %d, the manifest says %d", fi.Size(), f.Size))
	}

	h := sha256.New()
	src := io.TeeReader(bufio.NewReaderSize(fh, copyBufferSize), h)
	if f.Kind == KindTar {
		if err := readTar(src, buf); err != nil {
			problems = append(problems, fmt.Sprintf("not a readable tar: %v", err))
		}
	}
	// The rest: all of a dump, the padding after a tar's end.
	if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{src}, buf); err != nil {
		problems = append(problems, fmt.Sprintf("read error: %v", unwrapPath(err)))
	} else if sum := hex.EncodeToString(h.Sum(nil)); sum != f.SHA256 {
		problems = append(problems, fmt.Sprintf("sha256 %s, the manifest says %s", sum, f.SHA256))
	}

	if f.Kind == KindPGDump {
		if p := listDump(ctx, pgRestore, path); p != "" {
			problems = append(problems, p)
		}
	}
	return problems
}

// readTar reads an archive to its end, contents included.
func readTar(r io.Reader, buf []byte) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(io.Discard, tr, buf); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// listDump runs `pg_restore --list` on a dump and returns what is wrong:
// it fails, or it lists nothing.
func listDump(ctx context.Context, pgRestore, path string) string {
	prog, err := exec.LookPath(pgRestore)
	if err != nil {
		if !strings.ContainsRune(pgRestore, '/') {
			return fmt.Sprintf("cannot check with pg_restore: %s not found on PATH: install postgresql-client", pgRestore)
		}
		return fmt.Sprintf("cannot check with pg_restore: %s cannot be run (%v)", pgRestore, unwrapPath(err))
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, "--list", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := fmt.Sprintf("pg_restore --list failed with %v", err)
		if tail := lastLines(stderr.String(), 5); tail != "" {
			msg += ": " + tail
		}
		return msg
	}
	for line := range strings.Lines(stdout.String()) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, ";") {
			return ""
		}
	}
	return "pg_restore --list shows an empty table of contents"
}

// lastLines joins the last n non-empty lines of s with "; ".
func lastLines(s string, n int) string {
	var lines []string
	for line := range strings.Lines(s) {
		if l := strings.TrimSpace(line); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// unlistedDumpFiles names the entries of the directory dump of source
// that the manifest does not list.
func unlistedDumpFiles(dir string, m *Manifest, source string) []string {
	entries, err := os.ReadDir(filepath.Join(dir, DumpDirName(source)))
	if err != nil {
		return nil // each listed file says it is missing
	}
	var extra []string
	for _, e := range entries {
		if _, ok := fileByName(m.Files, DumpDirName(source)+"/"+e.Name()); !ok {
			extra = append(extra, e.Name())
		}
	}
	return extra
}
