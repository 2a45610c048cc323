package config

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
		out  string
	}{
		{"90s", 90 * time.Second, true, "1m30s"},
		{"2h30m", 150 * time.Minute, true, "2h30m"},
		{"10m", 10 * time.Minute, true, "10m"},
		{"1h", time.Hour, true, "1h"},
		{"1500ms", 1500 * time.Millisecond, true, "1.5s"},
		{"0s", 0, true, "0s"},
		{"5", 0, false, ""},
		{"5 seconds", 0, false, ""},
		{"", 0, false, ""},
	}
	for _, c := range cases {
		var d Duration
		err := d.UnmarshalText([]byte(c.in))
		if (err == nil) != c.ok {
			t.Errorf("%q: err %v", c.in, err)
			continue
		}
		if !c.ok {
			continue
		}
		if d.Duration != c.want || d.String() != c.out {
			t.Errorf("%q = %v (%s), want %v (%s)", c.in, d.Duration, d, c.want, c.out)
		}
		text, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back != d {
			t.Errorf("%q does not round-trip: %q", c.in, text)
		}
	}
}
