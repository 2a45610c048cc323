// Package config loads and validates ckanops' two configuration files: the
// gate's gate.toml (LoadGate) and the console's sites.toml (LoadSites).
//
// Loading is strict. An unknown key, a value of the wrong type, a bad
// duration, URL or CIDR, or a missing required key is an error; every
// problem found in a file is reported at once, one per line, as
//
//	FILE:LINE: KEY: problem
//
// (the line is left out when there is none to give, such as for a key
// that is missing from the file). Such an error is an *Error, so callers
// can list its Problems themselves.
//
// Relative paths in a file are relative to the file's directory, and a
// leading "~/" is the user's home directory. Every default lives in
// defaults.go, and docs/config.md documents the same values.
//
// The package reads files and the environment; it must not open network
// connections, start processes, or write anything. It never puts a token's
// value into an error or a warning, and URLs that may hold passwords are
// SecretURLs, which print themselves with the password hidden.
package config
