package ckanclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
)

const (
	gateRunbookCall       = "gate runbook"
	gateRunbookEventsCall = "gate runbook events"
)

// Runbook reads the site's current runbook, or the last one if none is
// active (GET /-/ckanops/runbook). It returns nil and no error when the
// gate has never run one.
func (c *Client) Runbook(ctx context.Context) (*api.Runbook, error) {
	var rb api.Runbook
	err := c.gateCall(ctx, call{method: http.MethodGet, path: api.PathRunbook, name: gateRunbookCall, retry: true}, &rb)
	var he *HTTPError
	switch {
	case IsNotFound(err):
		return nil, nil
	case errors.As(err, &he) && he.Status == http.StatusNotFound:
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &rb, nil
}

// StartRunbook starts a runbook on the site (POST /-/ckanops/runbook);
// never retried. A runbook already active is a 409 *BadRequestError.
func (c *Client) StartRunbook(ctx context.Context, o api.RunbookOptions) (*api.Runbook, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%s at %s: %w", gateRunbookCall, redactURL(c.urlFor(api.PathRunbook)), err)
	}
	return c.runbookPost(ctx, api.PathRunbook, o)
}

// ConfirmStep confirms the step the runbook waits at.
func (c *Client) ConfirmStep(ctx context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return c.runbookPost(ctx, api.PathRunbookConfirm, a)
}

// RetryStep runs the failed or interrupted step again.
func (c *Client) RetryStep(ctx context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return c.runbookPost(ctx, api.PathRunbookRetry, a)
}

// ResumeRunbook continues an interrupted runbook at the step it stood.
func (c *Client) ResumeRunbook(ctx context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return c.runbookPost(ctx, api.PathRunbookResume, a)
}

// SkipStep skips the step the runbook waits at (only where the gate allows it).
func (c *Client) SkipStep(ctx context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return c.runbookPost(ctx, api.PathRunbookSkip, a)
}

// AbortRunbook stops the runbook. With a.Disable the gate also puts the
// site back to live and resumes RQ ("disable maintenance now").
func (c *Client) AbortRunbook(ctx context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return c.runbookPost(ctx, api.PathRunbookAbort, a)
}

// AckGateStopped tells the runbook that a gone gate (a.Gate) is stopped,
// so that its drain stops waiting for it (POST
// /-/ckanops/runbook/gate-stopped).
func (c *Client) AckGateStopped(ctx context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return c.runbookPost(ctx, api.PathRunbookGateStopped, a)
}

func (c *Client) runbookPost(ctx context.Context, path string, body any) (*api.Runbook, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("%s: encode request: %w", gateRunbookCall, err)
	}
	var rb api.Runbook
	if err := c.gateCall(ctx, call{method: http.MethodPost, path: path, name: gateRunbookCall, body: b}, &rb); err != nil {
		return nil, err
	}
	return &rb, nil
}

// maxEventLine bounds one line of the event stream.
const maxEventLine = 1 << 20

// RunbookEvents follows the runbook's journal (GET
// /-/ckanops/runbook/events, Server-Sent Events) and calls fn with every
// event whose sequence number is above since, in order. It returns when
// ctx is done (ctx's error), when fn returns an error (that error), or
// when the gate ends the stream (nil: the runbook finished, or the gate
// stopped; read the runbook to know which). It is not retried: callers
// reconnect with the last Seq they saw.
func (c *Client) RunbookEvents(ctx context.Context, since int64, fn func(api.RunbookEvent) error) error {
	u := c.urlFor(api.PathRunbookEvents) + "?since=" + strconv.FormatInt(since, 10)
	// A half-open connection (a gate host that vanished, a NAT that
	// forgot it) would block the read for ever: the gate writes at least
	// a keep-alive comment every 15s, so silence past c.idle drops it.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(c.idle, func() {
		cancel(fmt.Errorf("%s: nothing from the gate for %s (not even a keep-alive): the connection is taken for dead", gateRunbookEventsCall, c.idle))
	})
	defer idle.Stop()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", gateRunbookEventsCall, err)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.stream.Do(req)
	if err != nil {
		return c.transportError(ctx, call{method: http.MethodGet, path: api.PathRunbookEvents, name: gateRunbookEventsCall, isGate: true}, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		a := answer{status: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: body}
		k := call{method: http.MethodGet, path: api.PathRunbookEvents, name: gateRunbookEventsCall, isGate: true}
		if err := c.decodeGate(a, k, &struct{}{}); err != nil {
			return err
		}
		return fmt.Errorf("%s at %s: want a text/event-stream, got %d %s", gateRunbookEventsCall, redactURL(u), resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	body := &idleReader{r: resp.Body, idle: idle, d: c.idle}
	err = readEvents(body, func(data []byte) error {
		var ev api.RunbookEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("%s at %s: bad event: %w", gateRunbookEventsCall, redactURL(u), err)
		}
		if ev.Seq <= since {
			return nil
		}
		since = ev.Seq
		// The caller may take its time (an operator at a prompt): that
		// is not the gate's silence.
		idle.Stop()
		defer idle.Reset(c.idle)
		return fn(ev)
	}, ctx)
	if cause := context.Cause(sctx); err != nil && ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// idleReader re-arms the idle timer with every byte read.
type idleReader struct {
	r    io.Reader
	idle *time.Timer
	d    time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.idle.Reset(r.d)
	}
	return n, err
}

// readEvents parses a Server-Sent Events stream and hands each event's
// data to fn. Comments (": keep-alive") and fields other than data are
// ignored; the event's id is in its JSON.
func readEvents(r io.Reader, fn func(data []byte) error, ctx context.Context) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) > 0 {
				if err := fn(data); err != nil {
					return err
				}
				data = data[:0]
			}
		case line[0] == ':':
		default:
			field, value, _ := strings.Cut(string(line), ":")
			value = strings.TrimPrefix(value, " ")
			if field == "data" {
				if len(data) > 0 {
					data = append(data, '\n')
				}
				data = append(data, value...)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: stream broken: %w", gateRunbookEventsCall, err)
	}
	return nil
}
