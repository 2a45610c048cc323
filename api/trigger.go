package api

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Triggers: opt-in automatic maintenance from the health probes (gate.toml's
// [[trigger]]). A trigger watches one detail of one probe ("when"); when
// the comparison holds for "for", the gate puts the site in "mode" with the
// actor "trigger:NAME"; once it has been clear for "recover" (if set), and
// only if the trigger still holds the mode, back to live.

// TriggerActorPrefix starts the actor of a trigger's changes.
const TriggerActorPrefix = "trigger:"

// TriggerActor is the actor of the trigger called name.
func TriggerActor(name string) string { return TriggerActorPrefix + name }

// Trigger states.
const (
	TriggerArmed      = "armed"      // the condition does not hold
	TriggerPending    = "pending"    // it holds, for less than "for" so far
	TriggerFired      = "fired"      // the trigger set the mode, and it still holds
	TriggerRecovering = "recovering" // the trigger set the mode; clear for less than "recover" so far
	TriggerBlind      = "blind"      // the probe failed or its value is unknown: the trigger leaves the mode alone
	TriggerStood      = "stood-down" // a person (or a schedule) changed the mode since it fired: it no longer manages it
)

// TriggerState is one trigger as a gate sees it (Status.Triggers, with a
// token).
type TriggerState struct {
	Name  string `json:"name"`
	Check string `json:"check"`
	When  string `json:"when"`
	Mode  Mode   `json:"mode"`
	// For is how long the comparison must hold before the trigger acts;
	// Recover how long it must be clear before it returns the site to
	// live (empty: never by itself). Go durations.
	For     string `json:"for"`
	Recover string `json:"recover,omitempty"`
	State   string `json:"state"`
	// Since is when the state began: pending since, fired at, recovering
	// since, blind since.
	Since *time.Time `json:"since,omitempty"`
	// Value is the detail's last value read ("42.5", "true"); empty when
	// unknown.
	Value string `json:"value,omitempty"`
	// FiredAt and FiredValue say when the trigger last switched the site,
	// and on what value.
	FiredAt    *time.Time `json:"fired_at,omitempty"`
	FiredValue string     `json:"fired_value,omitempty"`
	// Note says why the trigger does not act although it could (the site
	// is in a maintenance it did not set, at most one switch per 5
	// minutes, another gate leads) or why it is blind.
	Note string `json:"note,omitempty"`
	// Leader is true on the gate that acts for the site's triggers.
	Leader bool `json:"leader"`
}

// Comparison operators of a trigger's "when".
var TriggerOps = []string{"<=", ">=", "==", "!=", "<", ">"}

// Condition is a parsed "when": one comparison of one detail of a probe.
type Condition struct {
	Key   string
	Op    string
	Num   float64 // the literal, when the detail is a number
	Bool  bool    // the literal, when the detail is true/false
	IsNum bool
}

func (c Condition) String() string { return c.Key + " " + c.Op + " " + c.Literal() }

// Literal is the value compared against, as "when" writes it.
func (c Condition) Literal() string {
	if c.IsNum {
		return strconv.FormatFloat(c.Num, 'g', -1, 64)
	}
	return strconv.FormatBool(c.Bool)
}

// DetailType is the type of a detail a trigger may compare: "number" or
// "bool".
type DetailType string

const (
	DetailNumber DetailType = "number"
	DetailBool   DetailType = "bool"
)

// Derived details, computed from two others, for triggers.
const (
	// DetailConnectionsRatio is a Postgres server's connections over its
	// max_connections (0 to 1).
	DetailConnectionsRatio = "connections_ratio"
	// DetailFreeRatio is the storage's free bytes over its total bytes.
	DetailFreeRatio = "free_ratio"
)

// detailTypes holds, for each kind of probe, the details a trigger may
// compare: every number and true/false field of its details struct (by
// JSON key), and the derived ones.
var detailTypes = map[string]map[string]DetailType{}

func init() {
	for kind, v := range map[string]any{
		KindPostgres: PostgresDetails{}, KindRQ: RQDetails{}, KindStorage: StorageDetails{},
		KindSolr: SolrDetails{}, KindCKAN: CKANDetails{},
	} {
		m := map[string]DetailType{}
		t := reflect.TypeOf(v)
		for i := range t.NumField() {
			f := t.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if dt, ok := detailType(f.Type); ok && key != "" {
				m[key] = dt
			}
		}
		detailTypes[kind] = m
	}
	detailTypes[KindPostgres][DetailConnectionsRatio] = DetailNumber
	detailTypes[KindStorage][DetailFreeRatio] = DetailNumber
}

func detailType(t reflect.Type) (DetailType, bool) {
	if t == reflect.TypeOf(ReplayLag{}) {
		return DetailNumber, true
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return DetailBool, true
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Float64:
		return DetailNumber, true
	}
	return "", false
}

// TriggerDetails returns the details a trigger on a probe of this name may
// compare, by key; nil when the probe has none (or is unknown).
func TriggerDetails(probe string) map[string]DetailType {
	return detailTypes[ProbeKind(probe)]
}

// ParseCondition reads a "when" for the probe: "KEY OP LITERAL", the key
// one of TriggerDetails(probe), the literal a number or true/false as the
// key's type wants. The error names the valid keys on a typo.
func ParseCondition(probe, when string) (Condition, error) {
	keys := TriggerDetails(probe)
	if keys == nil {
		return Condition{}, fmt.Errorf("check %q has no details a trigger can compare (use ckan_db, datastore_db, db:NAME, redis, storage, solr or ckan)", probe)
	}
	s := strings.TrimSpace(when)
	var c Condition
	var lit string
	for _, op := range TriggerOps {
		if i := strings.Index(s, op); i > 0 {
			c.Key, c.Op, lit = strings.TrimSpace(s[:i]), op, strings.TrimSpace(s[i+len(op):])
			break
		}
	}
	if c.Op == "" || c.Key == "" || lit == "" {
		return Condition{}, fmt.Errorf("%q is not one comparison: want KEY OP VALUE, OP one of %s (such as \"replay_lag_seconds > 30\")", when, strings.Join(TriggerOps, " "))
	}
	dt, ok := keys[c.Key]
	if !ok {
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		slices.Sort(names)
		return Condition{}, fmt.Errorf("check %q has no detail %q: it has %s", probe, c.Key, strings.Join(names, ", "))
	}
	switch dt {
	case DetailNumber:
		n, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			return Condition{}, fmt.Errorf("%s is a number: %q is not", c.Key, lit)
		}
		c.Num, c.IsNum = n, true
	case DetailBool:
		b, err := strconv.ParseBool(lit)
		if err != nil || (lit != "true" && lit != "false") {
			return Condition{}, fmt.Errorf("%s is true or false: %q is neither", c.Key, lit)
		}
		if c.Op != "==" && c.Op != "!=" {
			return Condition{}, fmt.Errorf("%s is true or false: compare it with == or !=, not %s", c.Key, c.Op)
		}
		c.Bool = b
	}
	return c, nil
}

// Eval reads the condition's detail in r and compares it. known is false
// when the check failed to read it (or the report holds no such detail):
// a trigger must then leave the mode alone. value is the detail as text.
func (c Condition) Eval(r CheckResult) (holds, known bool, value string) {
	v, ok := r.DetailValue(c.Key)
	if !ok {
		return false, false, ""
	}
	switch x := v.(type) {
	case float64:
		value = strconv.FormatFloat(x, 'f', -1, 64)
		if !c.IsNum {
			return false, false, value
		}
		switch c.Op {
		case "<":
			holds = x < c.Num
		case "<=":
			holds = x <= c.Num
		case ">":
			holds = x > c.Num
		case ">=":
			holds = x >= c.Num
		case "==":
			holds = x == c.Num
		case "!=":
			holds = x != c.Num
		}
	case bool:
		value = strconv.FormatBool(x)
		if c.IsNum {
			return false, false, value
		}
		holds = (x == c.Bool) == (c.Op == "==")
	default:
		return false, false, ""
	}
	return holds, true, value
}

// DetailValue returns a detail of the check's typed details by JSON key,
// as float64 or bool, derived details included; ok is false when it is
// not known (nil, not read, or no such key).
func (r CheckResult) DetailValue(key string) (any, bool) {
	switch {
	case r.Postgres != nil:
		if key == DetailConnectionsRatio {
			p := r.Postgres
			if p.Connections == nil || p.MaxConnections == nil || *p.MaxConnections <= 0 {
				return nil, false
			}
			return float64(*p.Connections) / float64(*p.MaxConnections), true
		}
		return fieldValue(*r.Postgres, key)
	case r.Storage != nil:
		if key == DetailFreeRatio {
			s := r.Storage
			if s.FreeBytes == nil || s.TotalBytes == nil || *s.TotalBytes == 0 {
				return nil, false
			}
			return float64(*s.FreeBytes) / float64(*s.TotalBytes), true
		}
		return fieldValue(*r.Storage, key)
	case r.RQ != nil:
		return fieldValue(*r.RQ, key)
	case r.Solr != nil:
		return fieldValue(*r.Solr, key)
	case r.CKAN != nil:
		return fieldValue(*r.CKAN, key)
	}
	return nil, false
}

// fieldValue reads the number or bool field of struct v whose JSON key is
// key.
func fieldValue(v any, key string) (any, bool) {
	rv := reflect.ValueOf(v)
	t := rv.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != key {
			continue
		}
		f := rv.Field(i)
		if lag, ok := f.Interface().(ReplayLag); ok {
			if !lag.Read || lag.Seconds == nil {
				return nil, false
			}
			return *lag.Seconds, true
		}
		if f.Kind() == reflect.Pointer {
			if f.IsNil() {
				return nil, false
			}
			f = f.Elem()
		}
		switch f.Kind() {
		case reflect.Bool:
			return f.Bool(), true
		case reflect.Int, reflect.Int64:
			return float64(f.Int()), true
		case reflect.Uint64:
			return float64(f.Uint()), true
		case reflect.Float64:
			return f.Float(), true
		}
		return nil, false
	}
	return nil, false
}
