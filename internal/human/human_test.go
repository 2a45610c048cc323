package human

import (
	"math"
	"testing"
	"time"
)

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 999: "999 B", 1000: "1.0 kB", 8704: "8.7 kB", 1_500_000: "1.5 MB",
		1_074_273_639: "1.1 GB", 12_300_000: "12.3 MB", 5_000_000_000: "5.0 GB", 12_300_000_000_000: "12.3 TB", math.MaxInt64: "9.2 EB",
	} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 45 * time.Second: "45s", 20*time.Minute + 59*time.Second: "20m",
		2*time.Hour + 5*time.Minute: "2h05m", 47*time.Hour + 59*time.Minute: "47h59m", 72 * time.Hour: "3d",
	} {
		if got := Ago(d); got != want {
			t.Errorf("Ago(%v) = %q, want %q", d, got, want)
		}
	}
}
