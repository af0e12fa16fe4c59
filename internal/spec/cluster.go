package spec

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v2"

	"vgrid/internal/ipam"
	"vgrid/internal/model"
)

// Limits of a cluster spec.
const (
	MaxRoles           = 16
	MaxRoleCount       = 256  // members of one role
	MaxClusterMembers  = 1024 // members of all roles together
	MaxClusterNetworks = 4
	maxNameLen         = 63 // of a DNS label, and so of a workspace's name
)

var clusterType = reflect.TypeFor[model.ClusterSpec]()

// maxMemberBase is how long a cluster's and a role's names may be
// together, so that every member name, up to index MaxRoleCount-1, fits
// in a workspace name.
var maxMemberBase = maxNameLen - len("--") - len(strconv.Itoa(MaxRoleCount-1))

// ParseCluster reads a cluster spec written as YAML or as JSON, with the
// same strictness and errors as Parse, then validates it without an image
// lookup. A role without a count gets 1.
func ParseCluster(data []byte) (model.ClusterSpec, error) {
	root, err := parseTree(data)
	if err != nil {
		return model.ClusterSpec{}, err
	}
	if root.kind != kindObject {
		if root.kind == kindNull {
			return model.ClusterSpec{}, errors.New("parse spec: empty document")
		}
		return model.ClusterSpec{}, fmt.Errorf("parse spec: want an object, got %s", root.describe())
	}
	s, err := decodeCluster(root)
	if err != nil {
		return model.ClusterSpec{}, err
	}
	if err := ValidateCluster(s, nil); err != nil {
		return model.ClusterSpec{}, err
	}
	return s, nil
}

// decodeCluster decodes an object node into a cluster spec, with hints
// for unknown fields, count defaults and normalization, but no validation.
func decodeCluster(root *node) (model.ClusterSpec, error) {
	var s model.ClusterSpec
	if err := decode(root, &s); err != nil {
		hints := map[string]string{}
		suggestFields(root, clusterType, "", hints, 0)
		addHints(err, hints)
		return model.ClusterSpec{}, err
	}
	if roles := get(root, "roles"); roles != nil && roles.kind == kindArray {
		for i, r := range roles.vals {
			if r.kind == kindObject && get(r, "count") == nil {
				s.Roles[i].Count = 1
			}
		}
	}
	normalizeCluster(&s)
	return s, nil
}

// normalizeCluster makes empty lists, maps and contexts nil and writes
// subnets in their canonical form, so that a spec survives a round trip.
func normalizeCluster(s *model.ClusterSpec) {
	s.Context = normalContext(s.Context)
	if len(s.Networks) == 0 {
		s.Networks = nil
	}
	for i, n := range s.Networks {
		if p, err := netip.ParsePrefix(n.Subnet); err == nil {
			s.Networks[i].Subnet = p.String()
		}
	}
	if len(s.Roles) == 0 {
		s.Roles = nil
	}
	for i := range s.Roles {
		s.Roles[i].Context = normalContext(s.Roles[i].Context)
		s.Roles[i].Volumes = normalizeVolumes(s.Roles[i].Volumes)
	}
}

func normalContext(c *model.Context) *model.Context {
	if c == nil {
		return nil
	}
	if len(c.SSHKeys) == 0 {
		c.SSHKeys = nil
	}
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if c.UserData == "" && c.Hostname == "" && c.SSHKeys == nil && c.Env == nil {
		return nil
	}
	return c
}

// get returns the value of key in an object node, or nil.
func get(n *node, key string) *node {
	if n == nil || n.kind != kindObject {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

// ValidateCluster checks a cluster spec and returns nil or a *FieldErrors
// listing every problem, in the order of the spec's fields. With a nil
// images it does not check that the roles' images exist.
func ValidateCluster(c model.ClusterSpec, images ImageLookup) error {
	errs := &FieldErrors{}
	validateName(errs, c.Name)
	if c.Lease != nil {
		validateLease(errs, c.Lease)
	}
	validateDuration(errs, c.Duration)
	sharedOK := true
	if c.Context != nil {
		sharedOK = validateMemberContext(errs, "", c.Context)
	}
	validateNetworks(errs, c.Networks)
	validateRoles(errs, c, images, sharedOK)
	return errs.orNil()
}

// prefixed runs check on errors of its own and adds them to errs with
// prefix before their fields. It reports whether check found nothing.
func prefixed(errs *FieldErrors, prefix string, check func(*FieldErrors)) bool {
	sub := &FieldErrors{}
	check(sub)
	for _, e := range sub.list {
		errs.add(prefix+e.Field, e.Reason)
	}
	errs.dropped += sub.dropped
	return sub.Len() == 0
}

// validateMemberContext checks the cluster's or a role's context: the
// rules of a workspace's, no hostname (each member's is its name), none of
// the variables vgrid sets, and room for them.
func validateMemberContext(errs *FieldErrors, prefix string, c *model.Context) bool {
	noHost := *c
	noHost.Hostname = ""
	ok := prefixed(errs, prefix, func(sub *FieldErrors) { validateContext(sub, &noHost) })
	if c.Hostname != "" {
		errs.add(prefix+"context.hostname", "not allowed in a cluster: each member's hostname is its name (<cluster>-<role>-<index>)")
		ok = false
	}
	if maxEnv := MaxEnv - len(model.ClusterEnv); len(c.Env) > maxEnv && len(c.Env) <= MaxEnv {
		errs.add(prefix+"context.env", envCountReason(maxEnv, len(c.Env), ""))
		ok = false
	}
	for _, k := range model.ClusterEnv {
		if _, set := c.Env[k]; set {
			errs.add(FieldPath(prefix+"context.env", k), "is set by vgrid for each member: "+strings.Join(model.ClusterEnv, ", ")+" are reserved")
			ok = false
		}
	}
	return ok
}

func envCountReason(limit, got int, with string) string {
	return fmt.Sprintf("at most %d entries allowed%s (vgrid adds %s), got %d", limit, with, strings.Join(model.ClusterEnv, ", "), got)
}

func validateNetworks(errs *FieldErrors, nets []model.ClusterNetwork) {
	if len(nets) > MaxClusterNetworks {
		errs.add("networks", fmt.Sprintf("at most %d networks allowed, got %d", MaxClusterNetworks, len(nets)))
		return
	}
	own := -1
	names := map[string]int{}
	for i, n := range nets {
		p := fmt.Sprintf("networks[%d]", i)
		if n.Name == "" {
			if own >= 0 {
				errs.add(p, fmt.Sprintf("networks[%d] is already the cluster's own network (the one without a name): give this one the name of an existing network", own))
			}
			own = i
			if n.Subnet != "" {
				if _, err := ipam.ParseSubnet(n.Subnet); err != nil {
					reason := err.Error()
					var ie *ipam.Error
					if errors.As(err, &ie) {
						reason = ie.Reason
					}
					errs.add(p+".subnet", reason)
				}
			}
			continue
		}
		if !dnsLabel.MatchString(n.Name) {
			errs.add(p+".name", "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'")
		} else if j, dup := names[n.Name]; dup {
			errs.add(p+".name", fmt.Sprintf("%q is used by networks[%d]", n.Name, j))
		} else {
			names[n.Name] = i
		}
		if n.Subnet != "" {
			errs.add(p+".subnet", "only the cluster's own network (the one without a name) takes a subnet: an existing network keeps its own")
		}
	}
}

func validateRoles(errs *FieldErrors, c model.ClusterSpec, images ImageLookup, sharedOK bool) {
	switch {
	case len(c.Roles) == 0:
		errs.add("roles", "required: at least one role")
		return
	case len(c.Roles) > MaxRoles:
		errs.add("roles", fmt.Sprintf("at most %d roles allowed, got %d", MaxRoles, len(c.Roles)))
		return
	}
	clusterNameOK := dnsLabel.MatchString(c.Name)
	seen := map[string]int{}
	total := 0
	for i, r := range c.Roles {
		p := fmt.Sprintf("roles[%d].", i)
		if prefixed(errs, p, func(sub *FieldErrors) { validateName(sub, r.Name) }) {
			if j, dup := seen[r.Name]; dup {
				errs.add(p+"name", fmt.Sprintf("%q is used by roles[%d]", r.Name, j))
			} else {
				seen[r.Name] = i
			}
			if n := len(c.Name) + len(r.Name); clusterNameOK && n > maxMemberBase {
				errs.add(p+"name", fmt.Sprintf("member names such as %s would be longer than %d characters: the cluster's and the role's names may have %d characters together, not %d",
					model.MemberName(c.Name, r.Name, MaxRoleCount-1), maxNameLen, maxMemberBase, n))
			}
		}
		switch {
		case r.Count < 0:
			errs.add(p+"count", fmt.Sprintf("must not be negative, got %d", r.Count))
		case r.Count > MaxRoleCount:
			errs.add(p+"count", fmt.Sprintf("must be at most %d, got %d", MaxRoleCount, r.Count))
		default:
			total += r.Count
		}
		prefixed(errs, p, func(sub *FieldErrors) { validateImage(sub, r.Image, images) })
		prefixed(errs, p, func(sub *FieldErrors) { validateQuantum(sub, r.Quantum) })
		if r.Context != nil && validateMemberContext(errs, p, r.Context) && sharedOK && c.Context != nil {
			merged := model.MergeContext(c.Context, r.Context)
			if limit := MaxEnv - len(model.ClusterEnv); len(merged.Env) > limit {
				errs.add(p+"context.env", envCountReason(limit, len(merged.Env), " with the cluster's context"))
			}
			if len(merged.SSHKeys) > MaxSSHKeys {
				errs.add(p+"context.ssh_keys", fmt.Sprintf("at most %d keys allowed with the cluster's context, got %d", MaxSSHKeys, len(merged.SSHKeys)))
			}
		}
		validateRoleVolumes(errs, p, c.Name, r)
		switch r.Placement {
		case model.PlacementAny, model.PlacementSpread, model.PlacementPack:
		default:
			errs.add(p+"placement", fmt.Sprintf("unknown placement %s (want spread or pack, or none)", quoteShort(string(r.Placement))))
		}
	}
	if total > MaxClusterMembers {
		errs.add("roles", fmt.Sprintf("%d members in all, at most %d allowed", total, MaxClusterMembers))
	}
}

// ExportCluster writes a cluster spec as YAML that ParseCluster reads back
// to the same spec: fields in the order of the format, empty ones left
// out, sizes, rates and durations with units ("512Mi", "100Mbit", "1h").
// Every role's count is written, even 0.
func ExportCluster(s model.ClusterSpec) ([]byte, error) {
	out, err := yaml.Marshal(toYAML(encode(reflect.ValueOf(s))))
	if err != nil {
		return nil, fmt.Errorf("export cluster spec: %w", err)
	}
	return out, nil
}

// encode turns a value into a node tree the way decode reads it back,
// following the json tags (omitempty, omitzero) of structs.
func encode(v reflect.Value) *node {
	switch v.Type() {
	case byteSizeType:
		return &node{kind: kindString, str: model.ByteSize(v.Int()).String()}
	case bitRateType:
		return &node{kind: kindString, str: model.BitRate(v.Int()).String()}
	case durationType:
		return &node{kind: kindString, str: shortDuration(time.Duration(v.Int()))}
	case timeType:
		return &node{kind: kindString, str: v.Interface().(time.Time).UTC().Format(time.RFC3339Nano)}
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return &node{kind: kindNull}
		}
		return encode(v.Elem())
	case reflect.Struct:
		n := &node{kind: kindObject}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if omitted(v.Field(i), opts) {
				continue
			}
			n.keys = append(n.keys, name)
			n.vals = append(n.vals, encode(v.Field(i)))
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return &node{kind: kindNull}
		}
		n := &node{kind: kindObject}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.keys = append(n.keys, k)
			n.vals = append(n.vals, encode(v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key()))))
		}
		return n
	case reflect.Slice:
		if v.IsNil() {
			return &node{kind: kindNull}
		}
		n := &node{kind: kindArray}
		for i := range v.Len() {
			n.vals = append(n.vals, encode(v.Index(i)))
		}
		return n
	case reflect.String:
		return &node{kind: kindString, str: v.String()}
	case reflect.Bool:
		return &node{kind: kindBool, b: v.Bool()}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &node{kind: kindNumber, str: strconv.FormatInt(v.Int(), 10)}
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		switch {
		case math.IsNaN(f):
			return &node{kind: kindNumber, str: ".nan", nonFinite: true}
		case math.IsInf(f, 1):
			return &node{kind: kindNumber, str: ".inf", nonFinite: true}
		case math.IsInf(f, -1):
			return &node{kind: kindNumber, str: "-.inf", nonFinite: true}
		}
		return &node{kind: kindNumber, str: strconv.FormatFloat(f, 'g', -1, 64)}
	}
	return &node{kind: kindNull} // not in a spec
}

// omitted applies encoding/json's omitempty and omitzero.
func omitted(v reflect.Value, opts string) bool {
	for opt := range strings.SplitSeq(opts, ",") {
		switch opt {
		case "omitzero":
			if z, ok := v.Interface().(interface{ IsZero() bool }); ok {
				if z.IsZero() {
					return true
				}
			} else if v.IsZero() {
				return true
			}
		case "omitempty":
			switch v.Kind() {
			case reflect.Pointer, reflect.Interface:
				if v.IsNil() {
					return true
				}
			case reflect.Map, reflect.Slice, reflect.String, reflect.Array:
				if v.Len() == 0 {
					return true
				}
			case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Float32, reflect.Float64:
				if v.IsZero() {
					return true
				}
			}
		}
	}
	return false
}

// shortDuration prints "1h" and "1h30m" where time.Duration prints
// "1h0m0s" and "1h30m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// toYAML turns a node tree into values go-yaml writes in order.
func toYAML(n *node) any {
	switch n.kind {
	case kindBool:
		return n.b
	case kindString:
		return n.str
	case kindNumber:
		switch n.str {
		case ".nan":
			return math.NaN()
		case ".inf":
			return math.Inf(1)
		case "-.inf":
			return math.Inf(-1)
		}
		if i, err := strconv.ParseInt(n.str, 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(n.str, 64)
		return f
	case kindObject:
		m := make(yaml.MapSlice, len(n.keys))
		for i, k := range n.keys {
			m[i] = yaml.MapItem{Key: k, Value: toYAML(n.vals[i])}
		}
		return m
	case kindArray:
		l := make([]any, len(n.vals))
		for i, v := range n.vals {
			l[i] = toYAML(v)
		}
		return l
	}
	return nil
}

// synonyms are names people use for a field in other systems.
var synonyms = map[string]string{
	"replicas": "count", "instances": "count", "cardinality": "count", "size": "count",
	"ram": "memory", "mem": "memory", "cores": "vcpus",
	"network": "networks", "role": "roles", "userdata": "user_data", "cloud_init": "user_data",
	"environment": "env", "ssh_key": "ssh_keys", "ttl": "duration", "affinity": "placement",
}

// suggestFields walks a node tree along the type decode fills and, for
// every unknown field, records the known names it may be a typo of.
func suggestFields(n *node, t reflect.Type, path string, out map[string]string, depth int) {
	if depth > maxDepth {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if leafType(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.kind != kindObject {
			return
		}
		fi := fieldsOf(t)
		for i, key := range n.keys {
			child := FieldPath(path, key)
			if idx, ok := fi.names[key]; ok {
				suggestFields(n.vals[i], t.Field(idx).Type, child, out, depth+1)
			} else if s := suggest(key, fi.names); s != "" {
				out[child] = s
			}
		}
	case reflect.Map:
		if n.kind == kindObject {
			for i, key := range n.keys {
				suggestFields(n.vals[i], t.Elem(), FieldPath(path, key), out, depth+1)
			}
		}
	case reflect.Slice:
		if n.kind == kindArray {
			for i, item := range n.vals {
				suggestFields(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out, depth+1)
			}
		}
	}
}

// leafType reports whether decode reads t from a scalar.
func leafType(t reflect.Type) bool {
	switch t {
	case byteSizeType, bitRateType, durationType, timeType:
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Pointer:
		return false
	}
	return true
}

// addHints appends "(did you mean ...?)" to the unknown-field errors that
// have a hint.
func addHints(err error, hints map[string]string) {
	var fe *FieldErrors
	if !errors.As(err, &fe) {
		return
	}
	for i, e := range fe.list {
		if h := hints[e.Field]; h != "" && e.Reason == "unknown field" {
			fe.list[i].Reason += " (did you mean " + h + "?)"
		}
	}
}

// suggest returns the known names key may be a typo or a synonym of:
// "cpu or vcpus", or "" when none is close.
func suggest(key string, names map[string]int) string {
	lower := strings.ToLower(key)
	if s, ok := synonyms[lower]; ok {
		if _, known := names[s]; known {
			return s
		}
	}
	limit := 1
	if len(key) >= 6 {
		limit = 2
	}
	best := limit + 1
	var found []string
	for name := range names {
		d := editDistance(lower, name)
		switch {
		case d < best:
			best, found = d, []string{name}
		case d == best:
			found = append(found, name)
		}
	}
	if len(found) == 0 {
		return ""
	}
	slices.Sort(found)
	if len(found) == 1 {
		return found[0]
	}
	return strings.Join(found[:len(found)-1], ", ") + " or " + found[len(found)-1]
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of neighbours count 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt32
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range cur {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
