package ckansim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// pythonJSON encodes v as CKAN's json.dumps does: ", " and ": " separators,
// every non-ASCII character escaped as \uXXXX, and no HTML escaping.
func pythonJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	compact := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	out := make([]byte, 0, len(compact)+len(compact)/8)
	inString, escaped := false, false
	for _, r := range string(compact) {
		switch {
		case inString && escaped:
			escaped = false
			out = append(out, string(r)...)
		case inString && r == '\\':
			escaped = true
			out = append(out, '\\')
		case inString && r == '"':
			inString = false
			out = append(out, '"')
		case inString && r > 0x7f:
			if r > 0xffff {
				r -= 0x10000
				out = fmt.Appendf(out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			} else {
				out = fmt.Appendf(out, `\u%04x`, r)
			}
		case inString:
			out = append(out, string(r)...)
		case r == '"':
			inString = true
			out = append(out, '"')
		case r == ',':
			out = append(out, ", "...)
		case r == ':':
			out = append(out, ": "...)
		default:
			out = append(out, string(r)...)
		}
	}
	return out, nil
}

// pyRepr renders a decoded JSON value as Python's repr would, for CKAN's
// error messages ("Request data JSON decoded to [1, 2] but ...").
func pyRepr(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case json.Number:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", `\'`) + "'"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = pyRepr(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = pyRepr(k) + ": " + pyRepr(v[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}
