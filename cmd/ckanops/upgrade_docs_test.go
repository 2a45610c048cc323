package main

// docs/upgrade.md's A/B upgrade is executed: its shell blocks that run
// something other than ckanops (createdb, the restore, the ckan.ini copy,
// `ckan datastore set-permissions | psql`) run, in the order printed,
// against a throwaway PostgreSQL cluster holding site A's databases and a
// snapshot of them, in a directory that stands for the host's root. And
// B's example gate.toml starts B read-only.

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/internal/throwaway"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// B's example config starts B read-only: a B that started live would
// accept writes that are lost when the traffic returns to A.
func TestDeployProdBStartsReadOnly(t *testing.T) {
	cfg, _, err := config.LoadGate(filepath.Join(deployDir, "gate", "prod-b.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.State.InitialMode != api.ModeReadOnly || cfg.State.InitialMessage == "" {
		t.Fatalf("deploy/gate/prod-b.toml: initial_mode %q, initial_message %q: B must start read-only, saying why", cfg.State.InitialMode, cfg.State.InitialMessage)
	}
	if cfg.Site != "prod-b" {
		t.Errorf("site %q", cfg.Site)
	}
	// The gate.toml upgrade.md shows for B says the same.
	for _, b := range docBlocks(t, "../../docs/upgrade.md", "## A/B", "toml") {
		if strings.Contains(b.text, `site = "prod-b"`) && !strings.Contains(b.text, `initial_mode = "read-only"`) {
			t.Errorf("docs/upgrade.md:%d: B's gate.toml does not start it read-only", b.line)
		}
	}
}

// docBlock is one fenced block of a Markdown file.
type docBlock struct {
	line int // of its first line of content
	lang string
	text string
}

// docBlocks returns the blocks of language lang (any, if "") in the
// section of path that starts with the heading heading and ends at the
// next heading of its level.
func docBlocks(t *testing.T, path, heading, lang string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	level := strings.Fields(heading)[0] + " "
	var out []docBlock
	var cur *docBlock
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		trimmed := strings.TrimSpace(l)
		switch {
		case cur == nil && strings.HasPrefix(l, "#"):
			if strings.HasPrefix(l, heading) {
				in = true
			} else if in && strings.HasPrefix(l, level) {
				in = false
			}
		case !in:
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &docBlock{line: n + 1, lang: strings.TrimPrefix(trimmed, "```")}
		case cur != nil && trimmed == "```":
			if lang == "" || cur.lang == lang {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			cur.text += trimmed + "\n"
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no ```%s block under %q", path, lang, heading)
	}
	return out
}

// The keys B's ckan.ini must change (issue 22), as CKAN declares them:
// ckan/config/config_declaration.yaml and ckanext/datastore's.
var bIniKeys = []string{"sqlalchemy.url", "ckan.datastore.write_url", "ckan.datastore.read_url", "ckan.storage_path",
	"solr_url", "ckan.site_url", "ckan.webassets.path", "ckan.redis.url"}

// A's ckan.ini, as the test's A has it (the keys B changes, and one it keeps).
const aIni = `[app:main]
use = egg:ckan
sqlalchemy.url = postgresql://ckan_default:PASSWORD@127.0.0.1/ckan_default
ckan.datastore.write_url = postgresql://ckan_default:PASSWORD@127.0.0.1/datastore_default
ckan.datastore.read_url = postgresql://datastore_default:PASSWORD@127.0.0.1/datastore_default
ckan.storage_path = /var/lib/ckan
solr_url = http://127.0.0.1:8983/solr/ckan
ckan.site_url = https://data.example.org
ckan.webassets.path = /var/lib/ckan/webassets
ckan.redis.url = redis://127.0.0.1:6379/0
ckan.plugins = activity datastore datatables_view
`

// fakeCKAN is CKAN's `ckan -c INI datastore set-permissions` as far as this
// test needs it: it reads the three database URLs of INI as CKAN does and
// prints the SQL that gives the DataStore's users their rights on the
// DataStore database (connect, schema usage, select on every table now
// and later; creation for the writer), to be piped into psql. Its argv is
// recorded. Any other use of it fails.
const fakeCKAN = `#!/bin/sh
echo "$@" >> "$CKAN_ARGV_LOG"
if [ "$1" != "-c" ] || [ "$3" != "datastore" ] || [ "$4" != "set-permissions" ] || [ $# -ne 4 ]; then
	echo "fake ckan: only 'ckan -c INI datastore set-permissions' is faked, not: $*" >&2
	exit 2
fi
get() { sed -n "s/^$1[ 	]*=[ 	]*//p" "$2" | tail -n 1; }
user() { echo "$1" | sed -e 's|^[a-z+]*://||' -e 's|[:@].*||'; }
db() { echo "$1" | sed -e 's|?.*||' -e 's|.*/||'; }
main=$(get sqlalchemy.url "$2"); write=$(get ckan.datastore.write_url "$2"); read=$(get ckan.datastore.read_url "$2")
if [ -z "$main" ] || [ -z "$write" ] || [ -z "$read" ]; then echo "fake ckan: $2 lacks a database URL" >&2; exit 1; fi
cat <<EOF
\connect "$(db "$write")"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE USAGE ON SCHEMA public FROM PUBLIC;
GRANT CREATE, USAGE ON SCHEMA public TO "$(user "$main")";
GRANT CREATE, USAGE ON SCHEMA public TO "$(user "$write")";
REVOKE CONNECT ON DATABASE "$(db "$main")" FROM "$(user "$read")";
GRANT CONNECT ON DATABASE "$(db "$write")" TO "$(user "$read")";
GRANT USAGE ON SCHEMA public TO "$(user "$read")";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO "$(user "$read")";
ALTER DEFAULT PRIVILEGES FOR USER "$(user "$write")" IN SCHEMA public GRANT SELECT ON TABLES TO "$(user "$read")";
EOF
`

// fakeSudo is `sudo -u USER COMMAND...`: COMMAND as USER of the
// throwaway cluster (PGUSER), for the PostgreSQL clients the docs run
// as the postgres superuser.
const fakeSudo = `#!/bin/sh
if [ "$1" != "-u" ] || [ -z "$2" ] || [ $# -lt 3 ]; then echo "fake sudo: want 'sudo -u USER COMMAND...'" >&2; exit 2; fi
PGUSER=$2; export PGUSER; shift 2; exec "$@"
`

var docSnapshotDir = regexp.MustCompile(`/var/backups/ckanops/prod/prod-[0-9TZ]+`)

func TestUpgradeDocABScriptsRun(t *testing.T) {
	cl := testpg.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := t.TempDir() // the host's /
	super := func(db string) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, cl.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	sql := func(c *pgx.Conn, sqls ...string) {
		t.Helper()
		for _, q := range sqls {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}

	// Site A as CKAN's install leaves it: its roles, its two databases,
	// the DataStore's rights, and a storage directory.
	pg := super("postgres")
	sql(pg, `CREATE ROLE ckan_default LOGIN`, `CREATE ROLE datastore_default LOGIN`,
		`CREATE DATABASE ckan_default OWNER ckan_default`, `CREATE DATABASE datastore_default OWNER ckan_default`)
	sql(super("ckan_default"), `SET ROLE ckan_default`, `CREATE TABLE package (id text PRIMARY KEY, name text)`,
		`INSERT INTO package VALUES ('p1', 'trees')`)
	sql(super("datastore_default"), `SET ROLE ckan_default`, `CREATE TABLE "9d2c7c3e-res" (_id serial, species text)`,
		`INSERT INTO "9d2c7c3e-res" (species) VALUES ('oak'), ('ash')`,
		`GRANT SELECT ON ALL TABLES IN SCHEMA public TO datastore_default`)
	storageA := filepath.Join(root, "var/lib/ckan")
	must(t, os.MkdirAll(filepath.Join(storageA, "resources/9d2/c7c"), 0o755))
	must(t, os.WriteFile(filepath.Join(storageA, "resources/9d2/c7c/3e-res"), []byte("species\noak\nash\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "etc/ckan/default"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc/ckan/default/ckan.ini"), []byte(aIni), 0o640))

	// A's runbook took this snapshot (step 1), where the docs say.
	m, err := snapshot.Take(ctx, snapshot.Spec{Site: "prod", Dir: t.TempDir(), PGDump: filepath.Join(cl.BinDir(), "pg_dump"),
		CKANDB: config.SecretURL(cl.URL("ckan_default")), DatastoreDB: config.SecretURL(cl.URL("datastore_default")),
		StoragePath: storageA, StatsSettle: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != snapshot.Consistent {
		t.Fatalf("snapshot %s: %s", m.Verdict, m.Changed)
	}

	// The commands run with fake sudo and ckan first on PATH, then the
	// cluster's PostgreSQL clients and ckanops.
	bin := t.TempDir()
	must(t, os.WriteFile(filepath.Join(bin, "sudo"), []byte(fakeSudo), 0o755))
	must(t, os.WriteFile(filepath.Join(bin, "ckan"), []byte(fakeCKAN), 0o755))
	argvLog := filepath.Join(t.TempDir(), "ckan-argv")
	env := append(os.Environ(), "PATH="+strings.Join([]string{bin, cl.BinDir(), filepath.Dir(binPath), os.Getenv("PATH")}, ":"),
		"PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(cl.Port()), "CKAN_ARGV_LOG="+argvLog)
	env = slices.DeleteFunc(env, func(kv string) bool {
		return strings.HasPrefix(kv, "PGUSER=") || strings.HasPrefix(kv, "PGDATABASE=") || strings.HasPrefix(kv, "PGPASSWORD=")
	})
	env = append(env, "PGUSER="+throwaway.PostgresSuperuser)

	var snapDir string
	host := func(script string) string {
		script = docSnapshotDir.ReplaceAllStringFunc(script, func(p string) string {
			snapDir = filepath.Join(root, p)
			return snapDir
		})
		return strings.NewReplacer("/etc/ckan/", root+"/etc/ckan/", "/var/lib/ckan-b", root+"/var/lib/ckan-b").Replace(script)
	}
	run := func(b docBlock) string {
		t.Helper()
		script := host(b.text)
		if snapDir != "" {
			if _, err := os.Stat(snapDir); err != nil {
				must(t, os.MkdirAll(filepath.Dir(snapDir), 0o755))
				must(t, os.Rename(m.Dir, snapDir))
			}
		}
		cmd := exec.Command("sh", "-e", "-c", script)
		cmd.Env = env
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docs/upgrade.md:%d: the block fails: %v\n%s\n%s", b.line, err, b.text, out)
		}
		return string(out)
	}
	readerSees := func(db string) (int, error) {
		c, err := pgx.Connect(ctx, strings.Replace(cl.URL(db), "postgres@", "datastore_default@", 1))
		if err != nil {
			return 0, err
		}
		defer c.Close(context.Background())
		var n int
		err = c.QueryRow(ctx, `SELECT count(*) FROM "9d2c7c3e-res"`).Scan(&n)
		return n, err
	}

	// Every sh block of the A/B section either only runs ckanops (their
	// lines are checked by TestDocumentedCommandLinesParse) or is run here.
	var ran []int
	setPermissions := false
	for _, b := range docBlocks(t, "../../docs/upgrade.md", "## A/B", "sh") {
		onlyCkanops := true
		for _, line := range strings.Split(strings.ReplaceAll(b.text, "\\\n", " "), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] != "ckanops" {
				onlyCkanops = false
			}
		}
		switch {
		case strings.Contains(b.text, "ckanops snapshot restore"):
			out := run(b)
			ran = append(ran, b.line)
			t.Logf("restore:\n%s", out)
			// B's databases hold A's rows, its storage A's files, and the
			// DataStore's reader cannot read B's DataStore yet.
			var name string
			if err := super("ckan_b").QueryRow(ctx, `SELECT name FROM package`).Scan(&name); err != nil || name != "trees" {
				t.Fatalf("ckan_b: %q, %v", name, err)
			}
			for _, db := range []string{"ckan_b", "datastore_b"} {
				var owners []string
				rows, err := super(db).Query(ctx, `SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'`)
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var o string
					must(t, rows.Scan(&o))
					owners = append(owners, o)
				}
				if !slices.Equal(owners, []string{"ckan_default"}) {
					t.Errorf("%s: tables owned by %v, want CKAN's role ckan_default", db, owners)
				}
			}
			if b, err := os.ReadFile(filepath.Join(root, "var/lib/ckan-b/resources/9d2/c7c/3e-res")); err != nil || string(b) != "species\noak\nash\n" {
				t.Fatalf("B's storage: %q, %v", b, err)
			}
			if _, err := readerSees("datastore_b"); err == nil {
				t.Fatal("the DataStore's read-only user reads datastore_b before set-permissions: the step would not be needed")
			}
		case strings.Contains(b.text, "datastore set-permissions"):
			run(b)
			ran = append(ran, b.line)
			setPermissions = true
			if n, err := readerSees("datastore_b"); err != nil || n != 2 {
				t.Fatalf("after set-permissions, datastore_default reads %d rows of datastore_b: %v", n, err)
			}
			argv, _ := os.ReadFile(argvLog)
			if want := "-c " + root + "/etc/ckan/b/ckan.ini datastore set-permissions\n"; string(argv) != want {
				t.Errorf("ckan ran as %q, want %q", argv, want)
			}
		case strings.Contains(b.text, "cp /etc/ckan/default/ckan.ini"):
			run(b)
			ran = append(ran, b.line)
			editBIni(t, filepath.Join(root, "etc/ckan/b/ckan.ini"))
		case !onlyCkanops:
			run(b)
			ran = append(ran, b.line)
			if strings.Contains(b.text, "createdb") {
				var owners []string
				rows, err := pg.Query(ctx, `SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database WHERE datname IN ('ckan_b', 'datastore_b') ORDER BY 1`)
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var s string
					must(t, rows.Scan(&s))
					owners = append(owners, s)
				}
				if !slices.Equal(owners, []string{"ckan_b:ckan_default", "datastore_b:ckan_default"}) {
					t.Fatalf("B's databases: %v", owners)
				}
			}
		}
	}
	if len(ran) < 4 || !setPermissions {
		t.Fatalf("ran the blocks at lines %v: the A/B section lost its createdb, restore, ckan.ini or set-permissions block", ran)
	}
	// A is untouched.
	if n, err := readerSees("datastore_default"); err != nil || n != 2 {
		t.Fatalf("A's DataStore: %d rows, %v", n, err)
	}
}

// editBIni applies upgrade.md's list of B's ckan.ini keys to the copy of
// A's, as the operator does, after checking the list: every key B must
// change, each with a value of B's (ckan.site_url excepted: behind the
// nginx switch B serves A's public URL).
func editBIni(t *testing.T, path string) {
	t.Helper()
	blocks := docBlocks(t, "../../docs/upgrade.md", "## A/B", "ini")
	want := map[string]string{}
	for _, l := range strings.Split(blocks[0].text, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			want[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := slices.Sorted(slices.Values(bIniKeys))
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("docs/upgrade.md:%d: B's ckan.ini keys %v, want %v", blocks[0].line, keys, wantKeys)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the copy of A's ckan.ini: %v", err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		k, v, ok := strings.Cut(l, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if nv, mine := want[k]; ok && mine {
			if nv == v && k != "ckan.site_url" {
				t.Errorf("B's %s is A's: %s", k, v)
			}
			lines[i] = k + " = " + nv
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Fatalf("A's ckan.ini lacks %v", want)
	}
	must(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o640))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
