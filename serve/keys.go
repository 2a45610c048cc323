package serve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ckanops/ckanops/api"
)

// Role is what a key may do.
type Role string

const (
	// RoleOperator may look and change: enable, disable, RQ, runbooks.
	RoleOperator Role = "operator"
	// RoleViewer may look: status, check, the console's views.
	RoleViewer Role = "viewer"
)

// Identity is the person behind an authenticated key.
type Identity struct {
	Name        string // the key's comment in its keys file
	Role        Role
	Fingerprint string // SHA256:..., as ssh-keygen -l prints it
	File        string // the keys file that listed it
	Line        int
}

// Actor is how the gate audits a change this person makes: the
// Ckanops-Actor header's value.
func (id Identity) Actor() string {
	return "ssh:" + id.Name + " (" + id.Fingerprint + ")"
}

// maxKeysFile bounds a keys file: thousands of keys, never a runaway file.
const maxKeysFile = 4 << 20

// maxKeyName bounds a key's comment, which becomes part of the actor.
const maxKeyName = 64

// keysFile is one authorized_keys file as last read.
type keysFile struct {
	path  string
	role  Role
	stamp fileStamp
	keys  map[string]Identity // by fingerprint
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	exists bool
	size   int64
	mtime  time.Time
	ino    uint64
	ctime  time.Time
}

func stampOf(fi fs.FileInfo) fileStamp {
	s := fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
		s.ctime = time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return s
}

// Keyring holds the operators' and viewers' keys and re-reads their files
// when they change, so adding or revoking a key needs no restart. It is
// safe for concurrent use.
type Keyring struct {
	mu    sync.Mutex
	files []*keysFile
	gen   uint64 // bumped on every reload that changed a file
	// report receives one line per problem found while reading (a bad
	// line, an option not enforced, a key in both files). nil: dropped.
	report func(msg string, args ...any)
}

// NewKeyring reads the operators' file (required) and the viewers' file
// (optional, "" for none). A missing operators file is an error: a
// server nobody may change anything through is a mistake, not a choice.
// Problems on single lines are reported and the line is skipped.
func NewKeyring(operators, viewers string, report func(msg string, args ...any)) (*Keyring, error) {
	if operators == "" {
		return nil, errors.New("serve: no operators keys file: set [serve] operators in sites.toml or pass --operators")
	}
	k := &Keyring{report: report}
	k.files = append(k.files, &keysFile{path: operators, role: RoleOperator})
	if viewers != "" {
		k.files = append(k.files, &keysFile{path: viewers, role: RoleViewer})
	}
	if _, err := os.Stat(operators); err != nil {
		return nil, fmt.Errorf("serve: operators keys file: %w (an authorized_keys file: one key per line, its comment the person's name)", err)
	}
	k.Reload()
	return k, nil
}

// Reload re-reads every file whose size, times or inode changed, and
// reports whether anything changed. A file that is gone or unreadable
// holds no keys until it is back: a revoked key never outlives its file.
func (k *Keyring) Reload() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	changed := false
	for _, f := range k.files {
		fi, err := os.Stat(f.path)
		var st fileStamp
		if err == nil {
			st = stampOf(fi)
		}
		if st == f.stamp && f.keys != nil {
			continue
		}
		keys, rerr := k.readFile(f, err)
		f.stamp, f.keys = st, keys
		if rerr != nil {
			k.say("keys file unusable: it grants nothing until fixed", "file", f.path, "role", string(f.role), "err", rerr.Error())
		}
		changed = true
	}
	if changed {
		k.gen++
		k.crossCheck()
	}
	return changed
}

// readFile parses one authorized_keys file; statErr is its Stat's error.
func (k *Keyring) readFile(f *keysFile, statErr error) (map[string]Identity, error) {
	keys := map[string]Identity{}
	if statErr != nil {
		return keys, statErr
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return keys, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxKeysFile+1))
	if err != nil {
		return keys, err
	}
	if len(data) > maxKeysFile {
		return keys, fmt.Errorf("larger than %d bytes: not an authorized_keys file", maxKeysFile)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		id, msg := parseKeyLine(text)
		if msg != "" {
			k.say("keys file line skipped", "file", f.path, "line", line, "problem", msg)
			continue
		}
		id.Role, id.File, id.Line = f.role, f.path, line
		if prev, dup := keys[id.Fingerprint]; dup {
			k.say("keys file line skipped: the key is listed already", "file", f.path, "line", line, "first_line", prev.Line)
			continue
		}
		keys[id.Fingerprint] = id
	}
	if err := sc.Err(); err != nil {
		return map[string]Identity{}, err
	}
	return keys, nil
}

// parseKeyLine reads one authorized_keys line. Key options (from=,
// command=, restrict, ...) are refused, not ignored: a key meant to be
// limited must not be let in unlimited.
func parseKeyLine(text string) (Identity, string) {
	pub, comment, options, rest, err := gossh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return Identity{}, "not an SSH public key in authorized_keys format"
	}
	if len(rest) > 0 {
		return Identity{}, "more than one key on the line"
	}
	if len(options) > 0 {
		return Identity{}, fmt.Sprintf("key options (%s) are not supported by ckanops serve: remove them, or keep the key out", strings.Join(optionNames(options), ", "))
	}
	if _, isCert := pub.(*gossh.Certificate); isCert {
		return Identity{}, "certificates are not supported: list the plain public key"
	}
	name := strings.TrimSpace(comment)
	if msg := checkKeyName(name); msg != "" {
		return Identity{}, msg
	}
	id := Identity{Name: name, Fingerprint: gossh.FingerprintSHA256(pub)}
	// The name reaches the gates as the actor: what they would refuse
	// (a bidirectional-formatting character, say) is refused here.
	if err := api.CheckActor(id.Actor()); err != nil {
		return Identity{}, "the key's comment (its owner's name) cannot name an actor: " + err.Error()
	}
	return id, ""
}

func optionNames(opts []string) []string {
	out := make([]string, len(opts))
	for i, o := range opts {
		name, _, _ := strings.Cut(o, "=")
		out[i] = name
	}
	return out
}

// checkKeyName checks a key's comment, the person's name: it is audited
// and shown on screens, so it must be short and printable.
func checkKeyName(name string) string {
	switch {
	case name == "":
		return "the key has no comment: the comment is its owner's name (append ' alice' to the line)"
	case len(name) > maxKeyName:
		return fmt.Sprintf("the key's comment (its owner's name) is longer than %d bytes", maxKeyName)
	case !utf8.ValidString(name):
		return "the key's comment (its owner's name) is not valid UTF-8"
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '(' || r == ')' {
			return "the key's comment (its owner's name) holds a control character or a parenthesis"
		}
	}
	return ""
}

// crossCheck reports keys listed both as operator and viewer; Lookup
// treats such a key as a viewer (the lesser right).
func (k *Keyring) crossCheck() {
	if len(k.files) < 2 {
		return
	}
	for fp, v := range k.files[1].keys {
		if o, ok := k.files[0].keys[fp]; ok {
			k.say("key is in both the operators and the viewers file: it gets the viewer's rights", "fingerprint", fp,
				"operators_line", o.Line, "viewers_line", v.Line)
		}
	}
}

func (k *Keyring) say(msg string, args ...any) {
	if k.report != nil {
		k.report(msg, args...)
	}
}

// Lookup returns who a key belongs to, re-reading the files first if
// they changed. A key in both files is a viewer.
func (k *Keyring) Lookup(key gossh.PublicKey) (Identity, bool) {
	k.Reload()
	return k.lookup(gossh.FingerprintSHA256(key))
}

// lookupFingerprint is Lookup by fingerprint, without re-reading.
func (k *Keyring) lookup(fp string) (Identity, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var found Identity
	ok := false
	for _, f := range k.files {
		if id, in := f.keys[fp]; in {
			found, ok = id, true // the viewers' file comes last: it wins
		}
	}
	return found, ok
}

// Counts returns how many keys each role has now.
func (k *Keyring) Counts() map[Role]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[Role]int{}
	for _, f := range k.files {
		out[f.role] += len(f.keys)
	}
	return out
}
