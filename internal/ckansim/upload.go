package ckansim

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
)

const (
	// maxKeptUpload is the largest uploaded file whose bytes the Sim keeps
	// for download; larger files are only counted and hashed.
	maxKeptUpload = 1 << 20
	// maxFormValue bounds one non-file field of a multipart form.
	maxFormValue = 1 << 20
	// maxBody bounds a JSON or URL-encoded request body.
	maxBody = 32 << 20
)

var errTooLarge = errors.New("request body too large")

// upload is one file part of a multipart request. Its bytes streamed
// through a counter and a SHA-256 hash; they are kept only when small.
type upload struct {
	Filename    string
	ContentType string
	Size        int64
	SHA256      [sha256.Size]byte
	kept        []byte // nil when the file was larger than maxKeptUpload
}

// MarshalJSON shows an upload as CKAN shows a werkzeug FileStorage that
// ends up in a result: its repr.
func (u *upload) MarshalJSON() ([]byte, error) {
	return pythonJSON(fmt.Sprintf("<FileStorage: '%s' ('%s')>", u.Filename, u.ContentType))
}

// readMultipart streams a multipart/form-data body: ordinary fields become
// form values, file fields (any part with a filename parameter, as in
// Werkzeug) are counted and hashed without being held whole.
func readMultipart(r *http.Request) (url.Values, map[string]*upload, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, nil, err
	}
	form, files := url.Values{}, map[string]*upload{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return form, files, nil
		}
		if err != nil {
			return nil, nil, err
		}
		_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		name := params["name"]
		if filename, isFile := params["filename"]; isFile {
			up, err := readUpload(part, filename, part.Header.Get("Content-Type"))
			if err != nil {
				return nil, nil, err
			}
			files[name] = up
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, maxFormValue+1))
		if err != nil {
			return nil, nil, err
		}
		if len(b) > maxFormValue {
			return nil, nil, fmt.Errorf("form field %q: %w", name, errTooLarge)
		}
		form.Add(name, string(b))
	}
}

func readUpload(r io.Reader, filename, contentType string) (*upload, error) {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	h := sha256.New()
	k := &keeper{limit: maxKeptUpload}
	n, err := io.Copy(io.MultiWriter(h, k), r)
	if err != nil {
		return nil, err
	}
	up := &upload{Filename: filename, ContentType: contentType, Size: n}
	if !k.over {
		up.kept = append([]byte{}, k.buf...)
	}
	h.Sum(up.SHA256[:0])
	return up, nil
}

// keeper keeps what is written to it while it stays within limit, and
// nothing once it has gone over.
type keeper struct {
	buf   []byte
	limit int
	over  bool
}

func (k *keeper) Write(p []byte) (int, error) {
	if !k.over {
		if len(k.buf)+len(p) > k.limit {
			k.over, k.buf = true, nil
		} else {
			k.buf = append(k.buf, p...)
		}
	}
	return len(p), nil
}

// readBody reads a non-multipart body up to maxBody.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, errTooLarge
	}
	return b, nil
}
