package api

import (
	"testing"
	"time"
)

func TestProgressText(t *testing.T) {
	p := Progress{Part: "archive of storage", DoneFiles: 120, TotalFiles: 300, DoneBytes: 21_000_000, TotalBytes: 63_000_000, RateBytesPerS: 2_100_000, ETAS: 20}
	if got, want := p.String(), "archive of storage: 120/300 files, 21.0 MB of 63.0 MB (33%), 2.1 MB/s, ETA 20s"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	d := Progress{Part: "pg_dump ckan_db", DoneBytes: 999, Ended: true}
	if got, want := d.String(), "pg_dump ckan_db: 999 B, ended"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if spanText(2*time.Hour+5*time.Minute) != "2h05m" || spanText(-time.Second) != "0s" {
		t.Error(spanText(2*time.Hour + 5*time.Minute))
	}
}

func TestTrackProgress(t *testing.T) {
	var parts []PartProgress
	parts = TrackProgress(parts, "snapshot", Progress{Part: "a", DoneBytes: 1})
	parts = TrackProgress(parts, "snapshot", Progress{Part: "b", DoneBytes: 1})
	parts = TrackProgress(parts, "snapshot", Progress{Part: "a", DoneBytes: 2})
	if len(parts) != 2 || parts[0].DoneBytes != 2 {
		t.Fatalf("%+v", parts)
	}
	parts = TrackProgress(parts, "snapshot", Progress{Part: "a", Ended: true})
	parts = TrackProgress(parts, "snapshot", Progress{Part: "never seen", Ended: true})
	if len(parts) != 1 || parts[0].Part != "b" {
		t.Fatalf("after the end of a: %+v", parts)
	}
	parts = TrackProgress(parts, "restore", Progress{Part: "b"})
	if parts = ForgetStep(parts, "snapshot"); len(parts) != 1 || parts[0].Step != "restore" {
		t.Fatalf("after forgetting the snapshot: %+v", parts)
	}
}
