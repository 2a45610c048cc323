package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/config"
)

// netProblem says in an operator's words why a network call to what (such
// as "Postgres at db:5432") failed, or "" when err is not a network error
// it knows.
func netProblem(ctx context.Context, what string, timeout time.Duration, err error) string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || isTimeout(err):
		return fmt.Sprintf("no answer from %s within %s (is it up, and does a firewall let the gate through?)", what, timeout)
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot find %s: the host name %q does not resolve", what, dnsErr.Name)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("cannot reach %s: connection refused (is it running, on that host and port?)", what)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("cannot reach %s: no route to the host", what)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Sprintf("%s closed the connection (is it the right port? does it want TLS?)", what)
	case errors.Is(err, fs.ErrNotExist) && errors.As(err, &opErr):
		return fmt.Sprintf("cannot reach %s: the socket does not exist (is it running?)", what)
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr):
		return fmt.Sprintf("%s: its TLS certificate is not trusted: %v", what, err)
	case errors.As(err, &opErr):
		return fmt.Sprintf("cannot reach %s: %v", what, opErr.Err)
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// scrub removes the secrets of a connection URL from a message: the
// password (in user information or query), and the raw URL as a whole.
func scrub(msg string, secret config.SecretURL) string {
	raw := secret.Reveal()
	if raw == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, raw, secret.String())
	secrets := secret.Secrets()
	for _, s := range secrets {
		if len(s) >= 3 { // never blank out single letters all over a message
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

// ms is a duration in milliseconds with a fraction, for details.
func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// seconds rounds a duration to milliseconds, in seconds, for details.
func seconds(d time.Duration) float64 {
	return float64(d.Milliseconds()) / 1000
}

// oneLine flattens a server's message to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}
