package ckanclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/go-resty/resty/v2"
)

// retryable decides whether an idempotent request is worth another try:
// connection errors and timeouts, and 502/503/504 answers, except the
// gate's own maintenance refusal (it will not change within a backoff).
func retryable(resp *resty.Response, err error) bool {
	if err != nil {
		return retryableErr(err)
	}
	if resp == nil || resp.RawResponse == nil {
		return false
	}
	switch resp.StatusCode() {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return !isMaintenanceBody(resp.Body())
	}
	return false
}

func retryableErr(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary || dnsErr.IsTimeout
	}
	if isTLSError(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

func isTLSError(err error) bool {
	var (
		certErr     *tls.CertificateVerificationError
		recErr      tls.RecordHeaderError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidErr  x509.CertificateInvalidError
		alertErr    tls.AlertError
	)
	return errors.As(err, &certErr) || errors.As(err, &recErr) || errors.As(err, &unknownAuth) ||
		errors.As(err, &hostErr) || errors.As(err, &invalidErr) || errors.As(err, &alertErr)
}

func isMaintenanceBody(b []byte) bool {
	return bytes.Contains(b, []byte(`"Maintenance Error"`))
}

func retryReason(resp *resty.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	if resp != nil && resp.RawResponse != nil {
		return resp.Status()
	}
	return "unknown"
}
