// Package ckansim is a simulated CKAN web application for tests and for
// `ckanops demo`. It answers CKAN's Action API and web pages the way stock
// CKAN 2.11 (or 2.10, or 2.12) does: the same action names, URL rules and
// side_effect_free flags (all taken from package surface, never from
// memory), CKAN's JSON envelopes, bare-string 400s, status codes and HTML
// page shapes, over a small in-memory catalogue. It records every request it
// receives, so a test can assert that no write ever reached CKAN.
//
// ckansim is test and demo infrastructure. It must never be shipped or run
// as a real CKAN: it keeps everything in memory, trusts fixed API tokens,
// stores no uploaded file larger than a small limit, and does not decide
// what a write is for anyone but its own journal (that is the gate's job).
package ckansim
