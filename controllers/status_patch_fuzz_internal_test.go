package controllers

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

// The patches built from the statuses alone must be the ones
// controller-runtime computes from the whole objects: other writers share
// these objects (the forwarders apply parts of the record's status), so a
// patch that touched one more field, or set one differently, would undo
// their writes. For random pairs of statuses (the new one a mutation of the
// old: some fields kept, some changed, emptied, filled or changed inside)
// the patch is the same JSON document as MergeFrom's (StrategicMergeFrom's
// for a Service), so it touches exactly the same fields, and applying it
// yields the same object.

func FuzzRecordStatusPatch(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRecordStatusPatch(t, data)
	})
}

func FuzzServiceStatusPatch(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkServiceStatusPatch(t, data)
	})
}

// TestStatusPatchesMatchControllerRuntime runs the fuzz properties over
// many pseudo-random inputs in every test run, not only under -fuzz.
func TestStatusPatchesMatchControllerRuntime(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 4))
	for range 3000 {
		data := make([]byte, 64+rng.IntN(512))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		checkRecordStatusPatch(t, data)
		checkServiceStatusPatch(t, data)
		if t.Failed() {
			t.Fatalf("input %x", data)
		}
	}
}

func fuzzSeeds() [][]byte {
	return [][]byte{nil, {0}, {1, 2, 3, 4, 5, 6, 7, 8}, []byte("a status patch touches what changed and nothing else")}
}

func checkRecordStatusPatch(t *testing.T, data []byte) {
	t.Helper()
	src := &fuzzSource{data: data}
	var old lbv1.LoadBalancerStatus
	src.fill(reflect.ValueOf(&old).Elem(), 0)
	now := old.DeepCopy()
	src.mutate(reflect.ValueOf(now).Elem(), 0)

	rec := typicalRecord(typicalService())
	rec.Status = *now
	orig := rec.DeepCopy()
	orig.Status = old
	want, err := client.MergeFrom(orig).Data(rec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := recordStatusPatch(&old, rec)
	if err != nil {
		t.Fatalf("recordStatusPatch: %v", err)
	}
	if p.Type() != client.MergeFrom(orig).Type() {
		t.Fatalf("patch type %s, want %s", p.Type(), client.MergeFrom(orig).Type())
	}
	got, err := p.Data(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, got, want) {
		t.Errorf("patch from %s to %s:\n got %s\nwant %s (MergeFrom)", asJSON(old), asJSON(*now), got, want)
		return
	}
	base, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	gotObj, err := jsonpatch.MergePatch(base, got)
	if err != nil {
		t.Fatalf("applying %s: %v", got, err)
	}
	wantObj, err := jsonpatch.MergePatch(base, want)
	if err != nil {
		t.Fatalf("applying %s: %v", want, err)
	}
	if !sameJSON(t, gotObj, wantObj) {
		t.Errorf("applying %s gives %s, MergeFrom's %s gives %s", got, gotObj, want, wantObj)
	}
}

func checkServiceStatusPatch(t *testing.T, data []byte) {
	t.Helper()
	src := &fuzzSource{data: data}
	var old corev1.ServiceStatus
	src.fill(reflect.ValueOf(&old).Elem(), 0)
	now := old.DeepCopy()
	src.mutate(reflect.ValueOf(now).Elem(), 0)

	svc := typicalService()
	svc.Status = *now
	orig := svc.DeepCopy()
	orig.Status = old
	want, err := client.StrategicMergeFrom(orig).Data(svc)
	if err != nil {
		// Lists StrategicMergeFrom refuses (two conditions of one
		// type) are refused alike.
		if _, gerr := serviceStatusPatch(&old, svc); gerr == nil {
			t.Errorf("StrategicMergeFrom refuses %s -> %s (%v), serviceStatusPatch does not", asJSON(old), asJSON(*now), err)
		}
		return
	}
	p, err := serviceStatusPatch(&old, svc)
	if err != nil {
		t.Fatalf("serviceStatusPatch: %v", err)
	}
	if p.Type() != client.StrategicMergeFrom(orig).Type() {
		t.Fatalf("patch type %s, want %s", p.Type(), client.StrategicMergeFrom(orig).Type())
	}
	got, err := p.Data(svc)
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, got, want) {
		t.Errorf("patch from %s to %s:\n got %s\nwant %s (StrategicMergeFrom)", asJSON(old), asJSON(*now), got, want)
		return
	}
	base, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	gotObj, gerr := strategicpatch.StrategicMergePatch(base, got, &corev1.Service{})
	wantObj, werr := strategicpatch.StrategicMergePatch(base, want, &corev1.Service{})
	if (gerr == nil) != (werr == nil) || gerr == nil && !sameJSON(t, gotObj, wantObj) {
		t.Errorf("applying %s gives %s (%v), StrategicMergeFrom's %s gives %s (%v)", got, gotObj, gerr, want, wantObj, werr)
	}
}

// sameJSON says whether a and b are the same JSON document.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var av, bv any
	if err := json.Unmarshal(a, &av); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &bv); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(av, bv)
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// fuzzSource turns fuzz input into values: few distinct ones, so that
// old and new often agree, and the empty ones (which JSON omits) often.
type fuzzSource struct {
	data []byte
}

func (s *fuzzSource) next() int {
	if len(s.data) == 0 {
		return 0
	}
	b := s.data[0]
	s.data = s.data[1:]
	return int(b)
}

var (
	fuzzStrings = []string{"", "a", "b", "lb.portico.dev/Ready", "lb.portico.dev/Serving", "True", "<&>", "\xff", "10.0.0.1"}
	fuzzInts    = []int64{0, 1, 2, -1, 1 << 40}
	fuzzTimes   = []time.Time{{}, time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 30, 12, 0, 0, 500, time.UTC), // JSON shows seconds: equal to the one above
		time.Date(2026, 11, 30, 12, 0, 1, 0, time.UTC)}
	timeType = reflect.TypeFor[metav1.Time]()
)

// fill sets v to a random value.
func (s *fuzzSource) fill(v reflect.Value, depth int) {
	switch {
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(metav1.NewTime(fuzzTimes[s.next()%len(fuzzTimes)])))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fuzzStrings[s.next()%len(fuzzStrings)])
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := fuzzInts[s.next()%len(fuzzInts)]
		if v.OverflowInt(n) {
			n = 3
		}
		v.SetInt(n)
	case reflect.Bool:
		v.SetBool(s.next()%2 == 1)
	case reflect.Pointer:
		if s.next()%3 == 0 || depth > 6 {
			v.SetZero()
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		s.fill(v.Elem(), depth+1)
	case reflect.Slice:
		n := s.next() % 5
		switch {
		case n == 0 || depth > 6:
			v.SetZero()
		case n == 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			v.Set(reflect.MakeSlice(v.Type(), n-1, n-1))
			for i := range n - 1 {
				s.fill(v.Index(i), depth+1)
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				s.fill(v.Field(i), depth+1)
			}
		}
	default:
		panic("fuzzSource: no values for " + v.Type().String())
	}
}

// mutate changes some of v: fields are kept, refilled, or changed inside.
func (s *fuzzSource) mutate(v reflect.Value, depth int) {
	if v.Type() == timeType {
		if s.next()%2 == 0 {
			s.fill(v, depth)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if !v.Type().Field(i).IsExported() {
				continue
			}
			switch s.next() % 4 {
			case 0:
				s.fill(v.Field(i), depth+1)
			case 1:
				s.mutate(v.Field(i), depth+1)
			}
		}
	case reflect.Pointer:
		switch {
		case v.IsNil():
			s.fill(v, depth)
		case s.next()%3 == 0:
			v.SetZero()
		default:
			s.mutate(v.Elem(), depth+1)
		}
	case reflect.Slice:
		if v.Len() == 0 || s.next()%2 == 0 {
			s.fill(v, depth)
			return
		}
		s.mutate(v.Index(s.next()%v.Len()), depth+1)
	default:
		s.fill(v, depth)
	}
}
