package config

import (
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string,
// such as "90s" or "2h30m".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string. A bare number is refused:
// it has no unit.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q: write a number with a unit, such as \"90s\" or \"2h30m\"", string(text))
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String writes the duration without trailing zero units: "10m", not
// "10m0s".
func (d Duration) String() string { return shortDuration(d.Duration) }

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
