package spec

import (
	"fmt"
	"reflect"
	"strings"

	"vgrid/internal/model"
)

var roleType = reflect.TypeFor[model.ClusterRole]()

// ApplySets applies --set overrides to a cluster spec, in order, and
// validates the result (without an image lookup). Each set is PATH=VALUE:
//
//   - PATH is a field of the cluster (name, duration, lease.kind,
//     context.env.APP, ...) or of a role named by its name (worker.count,
//     worker.quantum.memory, head.context.user_data, ...). A cluster field
//     wins over a role of the same name; roles.<role>.<field> always names
//     a role. Lists (networks, context.ssh_keys, roles) are set whole.
//   - VALUE is read as in a spec file: taken as it is for a text field
//     (name, image, placement, user_data, an env value), as a YAML value
//     otherwise ("8", "256Mi", "true", "{kind: best-effort}", "[...]"); an
//     empty VALUE there is null.
//
// Problems with a set are reported against the set ("--set worker.count=x:
// want an integer, got string \"x\""), as are validation problems of the
// fields a set wrote.
func ApplySets(s model.ClusterSpec, sets []string) (model.ClusterSpec, error) {
	root := encode(reflect.ValueOf(s))
	errs := &FieldErrors{}
	origin := map[string]string{} // field path -> the set that wrote it
	for _, set := range sets {
		field, reason := applySet(root, set)
		if reason != "" {
			errs.add(setName(set), reason)
			continue
		}
		origin[field] = set
	}
	if errs.Len() > 0 {
		return model.ClusterSpec{}, errs
	}
	out, err := decodeCluster(root)
	if err == nil {
		err = ValidateCluster(out, nil)
	}
	if err != nil {
		if fe, ok := err.(*FieldErrors); ok {
			blame(fe, origin)
		}
		return model.ClusterSpec{}, err
	}
	return out, nil
}

// setName names a set in errors: "--set PATH=VALUE", cut short if long.
func setName(set string) string {
	const limit = 80
	if len(set) > limit {
		cut := limit
		for cut > 0 && !utf8Start(set[cut]) {
			cut--
		}
		set = set[:cut] + "..."
	}
	return "--set " + set
}

// blame reports the errors about a field a set wrote (or a field inside
// it) against the set.
func blame(fe *FieldErrors, origin map[string]string) {
	for i, e := range fe.list {
		best := ""
		for path := range origin {
			if (e.Field == path || strings.HasPrefix(e.Field, path+".") || strings.HasPrefix(e.Field, path+"[")) && len(path) > len(best) {
				best = path
			}
		}
		if best == "" {
			continue
		}
		reason := e.Reason
		if rest := strings.TrimPrefix(strings.TrimPrefix(e.Field, best), "."); rest != "" {
			reason = rest + ": " + reason
		}
		fe.list[i] = FieldError{Field: setName(origin[best]), Reason: reason}
	}
}

// applySet applies one set to the node tree of a cluster spec. It returns
// the path of the field it wrote (as errors name it: "roles[1].count"), or
// why it could not.
func applySet(root *node, set string) (field, reason string) {
	path, value, ok := strings.Cut(set, "=")
	if !ok || path == "" {
		return "", "want PATH=VALUE, e.g. worker.count=3"
	}
	parts := strings.Split(path, ".")
	if strings.Contains("."+path+".", "..") {
		return "", fmt.Sprintf("path %s has an empty element", quoteShort(path))
	}
	t := clusterType
	cur := root
	_, isField := fieldsOf(t).names[parts[0]]
	rest, shown := parts, ""
	if !isField || (parts[0] == "roles" && len(parts) > 1) {
		if isField {
			rest = parts[1:]
		}
		role := rest[0]
		if !isField && len(rest) == 1 {
			return "", bareName(root, role)
		}
		i, reason := findRole(root, role, fieldsOf(t).names)
		if reason != "" {
			return "", reason
		}
		shown = strings.Join(parts[:len(parts)-len(rest)+1], ".")
		rest = rest[1:]
		if len(rest) == 0 {
			return "", fmt.Sprintf("want %s.FIELD=VALUE, e.g. %s.count=3 (a role is not set whole)", shown, shown)
		}
		cur = get(root, "roles").vals[i]
		t = roleType
		field = fmt.Sprintf("roles[%d]", i)
	}
	for k, part := range rest {
		t = deref(t)
		var next reflect.Type
		switch {
		case t.Kind() == reflect.Struct:
			idx, ok := fieldsOf(t).names[part]
			if !ok {
				return "", unknownField(part, fieldsOf(t).names)
			}
			next = t.Field(idx).Type
		case t.Kind() == reflect.Map:
			next = t.Elem()
		default: // lists and scalars stop the walk below
			return "", fmt.Sprintf("%s has no fields", shown)
		}
		shown = strings.TrimPrefix(shown+"."+part, ".")
		field = FieldPath(field, part)
		if k == len(rest)-1 {
			n, reason := setValue(shown, value, next)
			if reason != "" {
				return "", reason
			}
			put(cur, part, n)
			return field, ""
		}
		switch nt := deref(next); {
		case leafType(nt):
			return "", fmt.Sprintf("%s has no fields", shown)
		case nt.Kind() == reflect.Slice:
			return "", fmt.Sprintf("%s is a list: set it whole, e.g. %s=[...]", shown, shown)
		}
		child := get(cur, part)
		if child == nil || child.kind == kindNull {
			child = &node{kind: kindObject}
			put(cur, part, child)
		}
		if child.kind != kindObject {
			return "", fmt.Sprintf("%s is not an object", shown)
		}
		cur, t = child, next
	}
	return field, ""
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func unknownField(name string, names map[string]int) string {
	reason := "unknown field " + quoteKey(name)
	if s := suggest(name, names); s != "" {
		reason += " (did you mean " + s + "?)"
	}
	return reason
}

// bareName explains a set whose path is a single name that is no field
// of the cluster: a role, a role's field, or a typo.
func bareName(root *node, name string) string {
	if _, reason := findRole(root, name, nil); reason == "" {
		return fmt.Sprintf("want %s.FIELD=VALUE, e.g. %s.count=3 (a role is not set whole)", name, name)
	}
	if _, ok := fieldsOf(roleType).names[name]; ok {
		return fmt.Sprintf("unknown field %s: a role's %s is set as ROLE.%s, e.g. worker.%s", name, name, name, name)
	}
	return unknownField(name, fieldsOf(clusterType).names)
}

// quoteKey quotes a name unless it is a plain key.
func quoteKey(k string) string {
	if plainKey.MatchString(k) {
		return k
	}
	return quoteShort(k)
}

// findRole returns the index of the role called name in the tree.
func findRole(root *node, name string, fields map[string]int) (int, string) {
	var names []string
	if roles := get(root, "roles"); roles != nil && roles.kind == kindArray {
		for i, r := range roles.vals {
			if n := get(r, "name"); n != nil && n.kind == kindString {
				if n.str == name {
					return i, ""
				}
				names = append(names, n.str)
			}
		}
	}
	list := "none"
	if len(names) > 0 {
		list = strings.Join(names, ", ")
	}
	reason := fmt.Sprintf("no role %s (roles: %s", quoteShort(name), list)
	if s := suggest(name, fields); s != "" {
		reason += "; or did you mean the field " + s + "?"
	}
	return 0, reason + ")"
}

// put sets key in an object node.
func put(obj *node, key string, val *node) {
	for i, k := range obj.keys {
		if k == key {
			obj.vals[i] = val
			return
		}
	}
	obj.keys = append(obj.keys, key)
	obj.vals = append(obj.vals, val)
}

// setValue reads a set's value for a field of type t and checks it with
// the decoder, so that it obeys the rules of the file.
func setValue(path, value string, t reflect.Type) (*node, string) {
	var n *node
	switch {
	case deref(t).Kind() == reflect.String:
		n = &node{kind: kindString, str: value}
	case strings.TrimSpace(value) == "":
		n = &node{kind: kindNull}
	default:
		var err error
		n, err = parseYAML([]byte(value))
		if err != nil {
			return nil, strings.TrimPrefix(err.Error(), "parse spec: ")
		}
	}
	d := &decoder{errs: &FieldErrors{}}
	d.value(path, n, reflect.New(t).Elem())
	if d.errs.Len() == 0 {
		return n, ""
	}
	hints := map[string]string{}
	suggestFields(n, t, path, hints, 0)
	addHints(d.errs, hints)
	var reasons []string
	for _, e := range d.errs.list {
		if rest := strings.TrimPrefix(strings.TrimPrefix(e.Field, path), "."); rest != "" {
			reasons = append(reasons, rest+": "+e.Reason)
		} else {
			reasons = append(reasons, e.Reason)
		}
	}
	return nil, strings.Join(reasons, "; ")
}
