// Package layering holds no code: its test holds the module's imports to
// the package layering table in docs/architecture.md.
package layering
