// Package snapshot takes, describes and verifies the snapshot the runbook
// makes while a CKAN site is read-only: CKAN's Postgres database and the
// DataStore's (pg_dump, custom format), each local file storage (a tar
// written here, one per storage: CKAN 2.12 may have several), and a
// manifest that says what was taken, with what checksums, what was not
// (a storage the gate cannot reach, such as a cloud bucket, or one the
// operator excluded), and whether the snapshot is consistent.
//
// Consistent means nothing the snapshot holds changed while it was taken.
// Take reads each database's row counters (pg_stat_user_tables), each
// table's relfilenode and a digest of the user schemas' definitions
// (pg_class, pg_attribute, pg_index, pg_constraint...), and digests the
// storage tree, before the dumps start and again once everything is
// written. Any content table whose counters moved, any table given a new
// relfilenode (TRUNCATE, VACUUM FULL, CLUSTER, a rewriting ALTER TABLE),
// any relation whose definition changed (DDL), and any file added, removed
// or modified makes the verdict "inconsistent" and is named. A storage of
// the site that is not in the snapshot and not excluded ([snapshot]
// exclude_storages) makes it "partial" otherwise: never "consistent". The few
// tables CKAN writes on reads are listed as bookkeeping and do not spoil
// the verdict; the rules are per database: in CKAN's, user.last_active,
// api_token.last_access, the dashboard, page-view tracking; in the
// DataStore's, _table_stats, the row-count cache CKAN 2.12's
// datastore_search fills. PostgreSQL publishes a session's counters up to
// 10 s after it commits, so Take waits for the sessions that worked
// during the snapshot before the second reading. Temporary tables are left
// out: pg_dump does not dump them. Not read: functions, types, sequences'
// state.
//
// A snapshot is a directory <dir>/<site>-<UTC time> holding
// ckan_db.dump, datastore_db.dump, storage.tar (the storage "default"),
// storage-<name>.tar (the others) and manifest.json; a database larger
// than Spec.ParallelThreshold is dumped with pg_dump --format=directory
// --jobs into <name>.dir/ instead (manifest format FormatDumpDir,
// dumpdir.go); with
// Spec.Incremental, the directory trees storage/ and storage-<name>/
// instead of the tars (manifest format FormatTree), whose files unchanged
// since the site's previous consistent snapshot are hard links to its
// copies (tree.go). It is
// built in <dir>/.tmp-<name>, and renamed to its name only when every file
// is written, hashed and synced, the manifest last: a directory whose name
// does not start with a dot and that holds manifest.json is complete. A
// failed or cancelled Take kills its children and removes what it wrote.
//
// What it must not do: put a password in argv, an error or an output line
// (pg_dump gets it in PGPASSWORD); read a dump a second time to hash it
// (the dumps are hashed as they stream to disk; the one exception is a
// directory dump, whose files pg_dump's jobs write themselves: they are
// read back once, right after, to hash and sync them); or leave anything that
// looks complete after a failure. It never writes to the databases or the
// storage it snapshots.
package snapshot
