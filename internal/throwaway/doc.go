// Package throwaway starts throwaway PostgreSQL clusters (StartPostgres) and
// redis-server processes (StartRedis) from the system's binaries, for
// `ckanops demo` and, through the thin wrappers internal/testpg and
// internal/testredis, for tests.
//
// It is linked into the ckanops binary, so it must never import `testing`,
// directly or through another package: what only tests need (t.Cleanup,
// t.Skip, t.Fatal) belongs to the wrappers.
//
// It must never touch a server it did not start: every server listens only
// on 127.0.0.1, on a port picked here, keeps its files (and PostgreSQL its
// Unix socket) in its own temporary directory, and only the processes
// started here are ever signalled.
//
// Every server runs in its own process group with a parent-death signal
// (StartProcess), so a program that is killed outright takes its servers
// with it and leaves at most a temporary directory. Close stops a server and
// removes its directory; the caller must call it.
//
// When a server's binaries are missing, StartPostgres and StartRedis return
// an error wrapping ErrPostgresNotInstalled or ErrRedisNotInstalled that
// says what to install.
package throwaway
