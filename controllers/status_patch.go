// Status patches built from what changed in the typed status.
// controller-runtime's MergeFrom and StrategicMergeFrom marshal both whole
// objects and decode both into maps to diff them: about 30 KB allocated per
// write, and in a node flap that makes all 10,000 records write at once,
// what is allocated while the garbage collector marks counts as live and
// raises the peak heap (issue 18). Only the status changes in these
// writes, so the diff of the rest is empty and need not be computed.

package controllers

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

// recordStatusPatch is the JSON merge patch (RFC 7386) that turns rec with
// status old into rec as it is. It is the patch client.MergeFrom computes
// from the two whole records, which differ only in status:
// {"status":{...}} naming only the fields whose JSON changed, null for
// those now omitted, objects diffed key by key, lists replaced whole ({}
// when the JSON did not change). It touches nothing MergeFrom would not,
// which matters because the forwarders own parts of the status by
// server-side apply (FuzzRecordStatusPatch holds it to that).
func recordStatusPatch(old *lbv1.LoadBalancerStatus, rec *lbv1.LoadBalancer) (client.Patch, error) {
	out := []byte(`{"status":`)
	out, changed, err := appendObjectPatch(out, reflect.ValueOf(old).Elem(), reflect.ValueOf(&rec.Status).Elem())
	switch {
	case err != nil:
		return nil, err
	case !changed:
		out = []byte("{}")
	default:
		out = append(out, '}')
	}
	return client.RawPatch(types.MergePatchType, out), nil
}

// appendObjectPatch appends to out the merge patch, a JSON object, that
// turns the JSON of ov into the JSON of nv, two values of one type that
// marshals as an object, and says whether there was anything to append.
// It works as jsonpatch.CreateMergePatch (which MergeFrom calls) on the
// marshalled values, field by field: fields whose values are deeply equal
// are skipped without being marshalled, others compared as marshalled,
// and plain structs on both sides diffed by recursion rather than by
// decoding their JSON into maps.
func appendObjectPatch(out []byte, ov, nv reflect.Value) ([]byte, bool, error) {
	fields, ok := jsonFieldsOf(ov.Type())
	if !ok {
		return appendMarshalledObjectPatch(out, ov, nv)
	}
	start := len(out)
	for i := range fields {
		f := &fields[i]
		of, nf := ov.Field(f.index), nv.Field(f.index)
		if reflect.DeepEqual(of.Addr().Interface(), nf.Addr().Interface()) {
			continue
		}
		oldOmitted, newOmitted := f.omitEmpty && isEmptyJSON(of), f.omitEmpty && isEmptyJSON(nf)
		if oldOmitted && newOmitted {
			continue
		}
		mark := len(out)
		if mark == start {
			out = append(out, '{')
		} else {
			out = append(out, ',')
		}
		out = append(out, f.quotedName...)
		out = append(out, ':')
		var changed bool
		var err error
		switch {
		case newOmitted:
			out, changed = append(out, "null"...), true
		case oldOmitted:
			out, err = appendJSON(out, nf)
			changed = true
		default:
			out, changed, err = appendValuePatch(out, of, nf)
		}
		if err != nil {
			return nil, false, err
		}
		if !changed {
			out = out[:mark]
		}
	}
	if len(out) == start {
		return out, false, nil
	}
	return append(out, '}'), true, nil
}

// appendValuePatch appends what a merge patch sets a field to when its
// JSON turns from that of ov into that of nv, if it changes: a patch of
// the object when both are objects, else the new value.
func appendValuePatch(out []byte, ov, nv reflect.Value) ([]byte, bool, error) {
	if ov.Kind() == reflect.Pointer && !ov.IsNil() && !nv.IsNil() && !marshalsItself(ov.Type()) {
		ov, nv = ov.Elem(), nv.Elem()
	}
	if ov.Kind() == reflect.Struct && !marshalsItself(ov.Type()) {
		if _, ok := jsonFieldsOf(ov.Type()); ok {
			return appendObjectPatch(out, ov, nv)
		}
	}
	ob, nb, err := marshalPair(ov, nv)
	if err != nil {
		return nil, false, err
	}
	switch {
	case bytes.Equal(ob, nb):
		return out, false, nil
	case ob[0] == '{' && nb[0] == '{':
		return appendMergePatch(out, ob, nb)
	}
	return append(out, nb...), true, nil
}

// appendMarshalledObjectPatch is appendObjectPatch for values whose fields
// it does not mirror: their JSON is diffed as MergeFrom diffs it.
func appendMarshalledObjectPatch(out []byte, ov, nv reflect.Value) ([]byte, bool, error) {
	ob, nb, err := marshalPair(ov, nv)
	if err != nil {
		return nil, false, err
	}
	return appendMergePatch(out, ob, nb)
}

// marshalPair is the JSON of the old and the new value, as MergeFrom
// marshals them (through their addresses, so pointer-receiver marshalers
// apply).
func marshalPair(ov, nv reflect.Value) (ob, nb []byte, err error) {
	if ob, err = json.Marshal(ov.Addr().Interface()); err != nil {
		return nil, nil, err
	}
	if nb, err = json.Marshal(nv.Addr().Interface()); err != nil {
		return nil, nil, err
	}
	return ob, nb, nil
}

func appendMergePatch(out, ob, nb []byte) ([]byte, bool, error) {
	p, err := jsonpatch.CreateMergePatch(ob, nb)
	if err != nil || string(p) == "{}" {
		return out, false, err
	}
	return append(out, p...), true, nil
}

func appendJSON(out []byte, v reflect.Value) ([]byte, error) {
	b, err := json.Marshal(v.Addr().Interface())
	return append(out, b...), err
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// marshalsItself says whether t (or *t) has its own JSON or text form,
// which field-by-field recursion would not see.
func marshalsItself(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(marshalerType) || pt.Implements(marshalerType) ||
		t.Implements(textMarshalerType) || pt.Implements(textMarshalerType)
}

// serviceStatusPatch is the strategic merge patch that turns svc with
// status old into svc as it is: what client.StrategicMergeFrom computes
// from the two whole Services (conditions merged by type, so that a stale
// cached copy changes only the conditions that differ from it), computed
// from the parts of the status that changed. A strategic diff of two
// objects is the union of the diffs of their fields, and that of two equal
// fields is empty: the rest of the Service, and the load balancer or the
// conditions when they are equal, are left out of both sides.
func serviceStatusPatch(old *corev1.ServiceStatus, svc *corev1.Service) (client.Patch, error) {
	o, n := serviceStatusDoc{}, serviceStatusDoc{}
	if !reflect.DeepEqual(&old.LoadBalancer, &svc.Status.LoadBalancer) {
		o.Status.LoadBalancer, n.Status.LoadBalancer = &old.LoadBalancer, &svc.Status.LoadBalancer
	}
	if !reflect.DeepEqual(old.Conditions, svc.Status.Conditions) {
		o.Status.Conditions, n.Status.Conditions = old.Conditions, svc.Status.Conditions
	}
	ob, err := json.Marshal(&o)
	if err != nil {
		return nil, err
	}
	nb, err := json.Marshal(&n)
	if err != nil {
		return nil, err
	}
	data, err := strategicpatch.CreateTwoWayMergePatchUsingLookupPatchMeta(ob, nb, serviceSchema)
	if err != nil {
		return nil, err
	}
	return client.RawPatch(types.StrategicMergePatchType, data), nil
}

// serviceStatusDoc is a Service with only the parts of its status that
// serviceStatusPatch diffs, with ServiceStatus's JSON names.
type serviceStatusDoc struct {
	Status struct {
		LoadBalancer *corev1.LoadBalancerStatus `json:"loadBalancer,omitempty"`
		Conditions   []metav1.Condition         `json:"conditions,omitempty"`
	} `json:"status"`
}

// serviceSchema is the patch metadata (list merge keys and strategies) of
// a Service, looked up once.
var serviceSchema = func() strategicpatch.LookupPatchMeta {
	schema, err := strategicpatch.NewPatchMetaFromStruct(&corev1.Service{})
	if err != nil {
		panic(err)
	}
	return schema
}()

// jsonField is a struct field as encoding/json marshals it.
type jsonField struct {
	index      int
	quotedName []byte
	omitEmpty  bool
}

var jsonFieldCache sync.Map // reflect.Type -> []jsonField, or nil when not mirrored

// jsonFieldsOf lists the fields encoding/json marshals of struct type t,
// sorted by name (the order MergeFrom's patches have), or says that t's
// JSON is not a plain mirror of its fields (not a struct, its own
// marshaller, embedded fields, tag options other than omitempty).
func jsonFieldsOf(t reflect.Type) ([]jsonField, bool) {
	if fs, ok := jsonFieldCache.Load(t); ok {
		return fs.([]jsonField), fs.([]jsonField) != nil
	}
	fields := mirroredFields(t)
	jsonFieldCache.Store(t, fields)
	return fields, fields != nil
}

func mirroredFields(t reflect.Type) []jsonField {
	if t.Kind() != reflect.Struct || marshalsItself(t) {
		return nil
	}
	fields := []jsonField{}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if sf.Anonymous {
			return nil
		}
		if !sf.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts != "" && opts != "omitempty" {
			return nil
		}
		if name == "" {
			name = sf.Name
		}
		quoted, err := json.Marshal(name)
		if err != nil {
			return nil
		}
		fields = append(fields, jsonField{index: i, quotedName: quoted, omitEmpty: opts == "omitempty"})
	}
	slices.SortFunc(fields, func(a, b jsonField) int { return bytes.Compare(a.quotedName, b.quotedName) })
	return fields
}

// isEmptyJSON is encoding/json's test for omitting an omitempty field.
func isEmptyJSON(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64,
		reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}
