package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxTokenFile bounds how much of a token file is read.
const maxTokenFile = 64 << 10

// readTokenFile returns the first line of path with surrounding white
// space trimmed, and whether the file's mode lets group or others read
// it. Errors name the file, never its contents.
func readTokenFile(path string) (token string, exposed bool, mode fs.FileMode, err error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", false, 0, fmt.Errorf("token file %s does not exist; create it holding the token on its first line, then chmod 600 %s", path, path)
	case errors.Is(err, fs.ErrPermission):
		return "", false, 0, fmt.Errorf("token file %s cannot be read: permission denied (run as the file's owner)", path)
	case err != nil:
		return "", false, 0, fmt.Errorf("token file %s cannot be opened: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", false, 0, fmt.Errorf("token file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", false, 0, fmt.Errorf("token file %s is not a regular file", path)
	}
	mode = fi.Mode().Perm()
	exposed = runtime.GOOS != "windows" && mode&0o044 != 0
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile))
	if err != nil {
		return "", exposed, mode, fmt.Errorf("token file %s cannot be read: %w", path, err)
	}
	first, _, found := bytes.Cut(data, []byte("\n"))
	if !found && len(data) == maxTokenFile {
		return "", exposed, mode, fmt.Errorf("token file %s: the first line is longer than %d bytes; is it the right file?", path, maxTokenFile)
	}
	token = strings.TrimSpace(string(first))
	if token == "" {
		return "", exposed, mode, fmt.Errorf("token file %s is empty: put the token on its first line", path)
	}
	if msg := checkToken(token); msg != "" {
		return "", exposed, mode, fmt.Errorf("token file %s: %s", path, msg)
	}
	return token, exposed, mode, nil
}

// checkToken vets a token's form without ever quoting it.
func checkToken(token string) string {
	if strings.ContainsFunc(token, unicode.IsControl) {
		return "the token contains control characters and cannot be sent in an HTTP header"
	}
	return ""
}

// Strength the ops token must have. It guards every mode change of the
// site, and the gate lets each address try 10 wrong tokens a minute: 32
// random characters (128 bits as hex) put guessing out of reach. The
// distinct-character floor rejects only the obviously made-up ("aaaa...",
// "abab..."): 32 random hex digits have about 14 distinct ones.
const (
	MinOpsTokenLen      = 32
	MinOpsTokenDistinct = 8
)

// CheckOpsToken says why token is too weak to be the ops token, or nil.
// The error never quotes the token.
func CheckOpsToken(token string) error {
	if n := utf8.RuneCountInString(token); n < MinOpsTokenLen {
		return fmt.Errorf("the ops token is %d characters long: it must be at least %d (128 bits of randomness)", n, MinOpsTokenLen)
	}
	distinct := map[rune]bool{}
	for _, r := range token {
		distinct[r] = true
	}
	if len(distinct) < MinOpsTokenDistinct {
		return fmt.Errorf("the ops token repeats %d distinct character(s): it must hold at least %d, as random text does", len(distinct), MinOpsTokenDistinct)
	}
	return nil
}

// makeOpsToken is the advice given with a weak or missing ops token.
func makeOpsToken(path string) string {
	return fmt.Sprintf("make one with: openssl rand -hex 32 > %s && chmod 600 %s", path, path)
}

func exposedMessage(path string, mode fs.FileMode) string {
	return fmt.Sprintf("token file %s is readable by group or others (mode %04o); run: chmod 600 %s", path, mode, path)
}
