package torchfile

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"sort"
	"strconv"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// classKind says what an allow-listed global does when the pickle uses it.
type classKind int

const (
	kindObject    classKind = iota // opaque instance: REDUCE/NEWOBJ → *Object, BUILD → State
	kindGlobal                     // bare value such as torch.float32; never called
	kindStorage                    // typed storage class, only a marker inside persistent ids
	kindTensorV2                   // torch._utils._rebuild_tensor_v2
	kindTensorV1                   // torch._utils._rebuild_tensor
	kindTensorV3                   // torch._utils._rebuild_tensor_v3 (dtype passed explicitly)
	kindParameter                  // torch._utils._rebuild_parameter(_with_state)
	kindBytes                      // _codecs.encode, bytes, bytearray: protocol 2's bytes
)

type allowed struct {
	kind  classKind
	dtype string // kindStorage: element type
}

// allowList is every global a torch checkpoint of ours may name. Anything
// else is refused by name, so nothing in a file decides what gets built.
var allowList = func() map[string]allowed {
	m := map[string]allowed{
		"torch._utils._rebuild_tensor_v2":                  {kind: kindTensorV2},
		"torch._utils._rebuild_tensor":                     {kind: kindTensorV1},
		"torch._utils._rebuild_tensor_v3":                  {kind: kindTensorV3},
		"torch._utils._rebuild_parameter":                  {kind: kindParameter},
		"torch._utils._rebuild_parameter_with_state":       {kind: kindParameter},
		"torch.UntypedStorage":                             {kind: kindStorage, dtype: "uint8"},
		"torch.storage.UntypedStorage":                     {kind: kindStorage, dtype: "uint8"},
		"torch.device":                                     {kind: kindObject},
		"sae_training.config.LanguageModelSAERunnerConfig": {kind: kindObject},
		"numpy.core.multiarray.scalar":                     {kind: kindObject},
		"numpy.dtype":                                      {kind: kindObject},
		"_codecs.encode":                                   {kind: kindBytes},
		"builtins.bytes":                                   {kind: kindBytes},
		"builtins.bytearray":                               {kind: kindBytes},
		"__builtin__.bytes":                                {kind: kindBytes},
		"__builtin__.bytearray":                            {kind: kindBytes},
		"builtins.set":                                     {kind: kindObject},
		"builtins.frozenset":                               {kind: kindObject},
		"__builtin__.set":                                  {kind: kindObject},
		"__builtin__.frozenset":                            {kind: kindObject},
	}
	for name, dt := range map[string]string{
		"FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
		"DoubleStorage": "float64", "LongStorage": "int64", "IntStorage": "int32",
		"ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
	} {
		m["torch."+name] = allowed{kind: kindStorage, dtype: dt}
	}
	// torch pickles a dtype as the bare global torch.<str(dtype) without "torch.">.
	for _, name := range []string{
		"float32", "float64", "float16", "bfloat16", "complex32", "complex64", "complex128",
		"int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool",
		"qint8", "quint8", "qint32", "quint4x2", "quint2x4", "float8_e4m3fn", "float8_e5m2",
	} {
		m["torch."+name] = allowed{kind: kindGlobal}
	}
	return m
}()

// elemSize is the byte size of each supported element type.
var elemSize = map[string]int{
	"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
	"int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}

// classRef is what FindClass returns for an allow-listed global.
type classRef struct {
	module, name string
	allowed
	l *loader
}

func (c *classRef) String() string { return c.module + "." + c.name }

// Call implements REDUCE (and INST/OBJ) on the global.
func (c *classRef) Call(args ...any) (any, error) {
	switch c.kind {
	case kindObject:
		return &pyObject{class: c, args: args}, nil
	case kindTensorV1, kindTensorV2, kindTensorV3:
		t, err := c.l.rebuildTensor(c.kind, args)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		return t, nil
	case kindParameter:
		if len(args) < 3 || len(args) > 4 {
			return nil, fmt.Errorf("%s: got %d arguments, want 3 or 4", c, len(args))
		}
		t, ok := args[0].(*Tensor)
		if !ok {
			return nil, fmt.Errorf("%s: data is %T, not a tensor", c, args[0])
		}
		rg, ok := args[1].(bool)
		if !ok {
			return nil, fmt.Errorf("%s: requires_grad is %T, not a bool", c, args[1])
		}
		t.RequiresGrad = rg
		return t, nil
	case kindBytes:
		b, err := latin1Bytes(args)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("pickle calls %s, which is not callable", c)
	}
}

// latin1Bytes decodes how protocol 2 pickles Python 3 bytes:
// _codecs.encode(str, "latin1"), or bytes() / bytearray() when empty.
func latin1Bytes(args []any) ([]byte, error) {
	if len(args) == 0 {
		return []byte{}, nil
	}
	if len(args) != 2 {
		return nil, fmt.Errorf("got %d arguments, want (str, encoding)", len(args))
	}
	s, ok1 := args[0].(string)
	enc, ok2 := args[1].(string)
	if !ok1 || !ok2 || (enc != "latin1" && enc != "latin-1") {
		return nil, fmt.Errorf("arguments (%T, %v), want (str, \"latin1\")", args[0], args[1])
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, fmt.Errorf("character U+%04X is not latin-1", r)
		}
		b = append(b, byte(r))
	}
	return b, nil
}

// PyNew implements NEWOBJ (cls.__new__(cls, *args)).
func (c *classRef) PyNew(args ...any) (any, error) {
	if c.kind != kindObject {
		return nil, fmt.Errorf("pickle instantiates %s with NEWOBJ, which is not supported", c)
	}
	return &pyObject{class: c, args: args}, nil
}

// pyObject is an allow-listed instance while unpickling.
type pyObject struct {
	class *classRef
	args  []any
	state any
}

// PySetState implements BUILD: a dict state is merged into the previous one,
// as __dict__.update would; anything else replaces it.
func (o *pyObject) PySetState(state any) error {
	if prev, ok := o.state.(*types.Dict); ok {
		if d, ok := state.(*types.Dict); ok {
			*prev = append(*prev, *d...)
			return nil
		}
	}
	o.state = state
	return nil
}

// loader holds what one file's unpickling shares: options, the storages
// met so far, and how to find a storage's bytes.
type loader struct {
	opts  LoadOptions
	extra map[string]bool // LoadOptions.AllowClasses
	// record returns the zip record data/<key>; nil in the legacy format,
	// whose storages are attached after the object pickle.
	record func(key string) ([]byte, error)
	owner  *mapping
	// fileSize bounds storage sizes declared in a legacy file.
	fileSize int
	roots    map[string]*rootStorage
	rootView map[string]*storageView
	views    map[string]*storageView
}

func newLoader(opts LoadOptions, owner *mapping, fileSize int) *loader {
	l := &loader{
		opts:     opts,
		owner:    owner,
		fileSize: fileSize,
		roots:    map[string]*rootStorage{},
		rootView: map[string]*storageView{},
		views:    map[string]*storageView{},
	}
	if len(opts.AllowClasses) > 0 {
		l.extra = map[string]bool{}
		for _, c := range opts.AllowClasses {
			l.extra[c] = true
		}
	}
	return l
}

func (l *loader) findClass(module, name string) (any, error) {
	full := module + "." + name
	if a, ok := allowList[full]; ok {
		if module == "__builtin__" { // protocol ≤ 2 spells Python 3's builtins so
			module = "builtins"
		}
		return &classRef{module: module, name: name, allowed: a, l: l}, nil
	}
	if l.extra[full] {
		return &classRef{module: module, name: name, allowed: allowed{kind: kindObject}, l: l}, nil
	}
	return nil, &NotAllowedError{Module: module, Name: name}
}

// unpickle scans the pickle at the start of p, runs gopickle on exactly
// those bytes and converts the result. It returns the pickle's length.
func (l *loader) unpickle(p []byte, persistent bool) (v any, n int, err error) {
	n, err = scanPickle(p)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		// Last line of defence: the scan rules out the panics we know of in
		// gopickle, but a file must never crash the program.
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("pickle: malformed data (%v)", r)
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(p[:n]))
	u.FindClass = l.findClass
	if persistent {
		u.PersistentLoad = l.persistentLoad
	}
	raw, err := u.Load()
	if err != nil {
		return nil, 0, pickleErr(err)
	}
	c := converter{done: map[any]any{}, busy: map[any]bool{}}
	v, err = c.conv(raw)
	if err != nil {
		return nil, 0, pickleErr(err)
	}
	return v, n, nil
}

// pickleErr marks an unpickling error as such, except a NotAllowedError,
// which already says what went wrong and must stay recognisable.
func pickleErr(err error) error {
	if _, ok := errors.AsType[*NotAllowedError](err); ok {
		return err
	}
	return fmt.Errorf("pickle: %w", err)
}

// persistentLoad resolves torch's storage ids:
// ("storage", storage_type, key, location, numel[, view_metadata]).
func (l *loader) persistentLoad(pid any) (any, error) {
	t, ok := pid.(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("persistent id is %T, not a tuple", pid)
	}
	if len(*t) == 0 {
		return nil, errors.New("persistent id is an empty tuple")
	}
	switch typename, _ := (*t)[0].(string); typename {
	case "storage":
	case "module":
		return nil, errors.New("persistent id names a pickled nn.Module class, which is not supported")
	default:
		return nil, fmt.Errorf("persistent id of kind %#v, want \"storage\"", (*t)[0])
	}
	if len(*t) != 5 && len(*t) != 6 {
		return nil, fmt.Errorf("storage id has %d elements, want 5 or 6", len(*t))
	}
	cls, ok := (*t)[1].(*classRef)
	if !ok || cls.kind != kindStorage {
		return nil, fmt.Errorf("storage id names type %v, not a storage class", (*t)[1])
	}
	key, ok := (*t)[2].(string)
	if !ok {
		return nil, fmt.Errorf("storage key is %T, not a string", (*t)[2])
	}
	location, ok := (*t)[3].(string)
	if !ok {
		return nil, fmt.Errorf("storage %q: location is %T, not a string", key, (*t)[3])
	}
	numel, ok := (*t)[4].(int)
	if !ok || numel < 0 {
		return nil, fmt.Errorf("storage %q: element count %v is not a non-negative int", key, (*t)[4])
	}
	root, err := l.root(key, cls.dtype, numel, location)
	if err != nil {
		return nil, err
	}
	if len(*t) == 6 && (*t)[5] != nil {
		return l.view(root, (*t)[5])
	}
	if v, ok := l.rootView[key]; ok {
		return v, nil
	}
	v := &storageView{root: root, off: 0, n: root.nbytes}
	l.rootView[key] = v
	return v, nil
}

func (l *loader) root(key, dt string, numel int, location string) (*rootStorage, error) {
	if r, ok := l.roots[key]; ok {
		if r.dtype != dt || r.numel != numel {
			return nil, fmt.Errorf("storage %q is referenced as %d×%s and as %d×%s", key, r.numel, r.dtype, numel, dt)
		}
		return r, nil
	}
	es := elemSize[dt]
	if numel > maxInt/es {
		return nil, fmt.Errorf("storage %q: %d elements of %s overflow", key, numel, dt)
	}
	r := &rootStorage{key: key, location: location, dtype: dt, numel: numel, nbytes: numel * es, owner: l.owner}
	if l.record == nil {
		// Legacy: the bytes follow the pickles; they cannot exceed the file.
		if r.nbytes > l.fileSize {
			return nil, fmt.Errorf("storage %q declares %d bytes, more than the %d-byte file", key, r.nbytes, l.fileSize)
		}
	} else {
		rec, err := l.record(key)
		if err != nil {
			return nil, err
		}
		if len(rec) < r.nbytes {
			return nil, fmt.Errorf("storage %q: record data/%s holds %d bytes, %d×%s needs %d", key, key, len(rec), numel, dt, r.nbytes)
		}
		r.data = rec[:r.nbytes:r.nbytes]
	}
	l.roots[key] = r
	return r, nil
}

// view resolves legacy view metadata (view_key, offset, size), counted in
// elements of the storage's type.
func (l *loader) view(root *rootStorage, meta any) (*storageView, error) {
	t, ok := meta.(*types.Tuple)
	if !ok || len(*t) != 3 {
		return nil, fmt.Errorf("storage %q: view metadata %v is not a 3-tuple", root.key, meta)
	}
	key, ok1 := (*t)[0].(string)
	off, ok2 := (*t)[1].(int)
	size, ok3 := (*t)[2].(int)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("storage %q: view metadata (%T, %T, %T), want (str, int, int)", root.key, (*t)[0], (*t)[1], (*t)[2])
	}
	if v, ok := l.views[key]; ok {
		if v.root != root {
			return nil, fmt.Errorf("storage view %q is used on storages %q and %q", key, v.root.key, root.key)
		}
		return v, nil
	}
	if off < 0 || size < 0 || off > root.numel || size > root.numel-off {
		return nil, fmt.Errorf("storage view %q: elements [%d, %d+%d) outside storage %q of %d elements", key, off, off, size, root.key, root.numel)
	}
	es := elemSize[root.dtype]
	v := &storageView{root: root, off: off * es, n: size * es}
	l.views[key] = v
	return v, nil
}

// rebuildTensor implements _rebuild_tensor(storage, offset, size, stride),
// _rebuild_tensor_v2(…, requires_grad, backward_hooks[, metadata]) and
// _rebuild_tensor_v3(…, requires_grad, backward_hooks, dtype[, metadata]).
func (l *loader) rebuildTensor(kind classKind, args []any) (*Tensor, error) {
	lo, hi := 6, 7
	switch kind {
	case kindTensorV1:
		lo, hi = 4, 4
	case kindTensorV3:
		lo, hi = 7, 8
	}
	if len(args) < lo || len(args) > hi {
		return nil, fmt.Errorf("got %d arguments, want %d to %d", len(args), lo, hi)
	}
	sv, ok := args[0].(*storageView)
	if !ok {
		return nil, fmt.Errorf("storage argument is %T, not a storage from a persistent id", args[0])
	}
	offset, ok := args[1].(int)
	if !ok {
		return nil, fmt.Errorf("storage offset is %T, not an int", args[1])
	}
	shape, err := intTuple("size", args[2])
	if err != nil {
		return nil, err
	}
	stride, err := intTuple("stride", args[3])
	if err != nil {
		return nil, err
	}
	t := &Tensor{DType: sv.root.dtype, Shape: shape, Stride: stride, Offset: offset, storage: sv, maxExpanded: l.opts.MaxExpandedElements}
	if kind != kindTensorV1 {
		if t.RequiresGrad, ok = args[4].(bool); !ok {
			return nil, fmt.Errorf("requires_grad is %T, not a bool", args[4])
		}
	}
	if kind == kindTensorV3 {
		g, ok := args[6].(*classRef)
		if !ok || g.kind != kindGlobal || g.module != "torch" {
			return nil, fmt.Errorf("dtype argument %v is not a torch dtype", args[6])
		}
		if elemSize[g.name] == 0 {
			return nil, fmt.Errorf("dtype torch.%s is not supported", g.name)
		}
		if sv.root.dtype != "uint8" && sv.root.dtype != g.name {
			return nil, fmt.Errorf("dtype torch.%s on a %s storage", g.name, sv.root.dtype)
		}
		t.DType = g.name
	}
	if elemSize[t.DType] == 0 {
		return nil, fmt.Errorf("dtype %s is not supported", t.DType)
	}
	if _, err := t.numelChecked(); err != nil {
		return nil, err
	}
	return t, nil
}

func intTuple(what string, v any) ([]int, error) {
	var items []any
	switch v := v.(type) {
	case *types.Tuple:
		items = *v
	case *types.List:
		items = *v
	default:
		return nil, fmt.Errorf("%s is %T, not a tuple", what, v)
	}
	if len(items) > maxDims {
		return nil, fmt.Errorf("%s has %d dimensions, more than %d", what, len(items), maxDims)
	}
	out := make([]int, len(items))
	for i, x := range items {
		n, ok := x.(int)
		if !ok {
			return nil, fmt.Errorf("%s[%d] is %T, not an int", what, i, x)
		}
		out[i] = n
	}
	return out, nil
}

// converter turns gopickle's values into this package's. Containers are
// converted once each (the memo may share them many times over) and a
// container that contains itself is an error rather than endless recursion.
type converter struct {
	done  map[any]any
	busy  map[any]bool
	depth int
}

// maxNesting bounds container nesting; real checkpoints nest a few levels.
const maxNesting = 1000

func (c *converter) conv(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, string, float64, []byte, *Tensor:
		return v, nil
	case int:
		return int64(v), nil
	case *big.Int:
		if v.IsInt64() {
			return v.Int64(), nil
		}
		return v, nil
	case *types.ByteArray:
		return []byte(*v), nil
	case *classRef:
		return Global{Module: v.module, Name: v.name}, nil
	case *storageView:
		return nil, errors.New("a storage outside a tensor is not supported")
	case *types.OrderedDictClass:
		return Global{Module: "collections", Name: "OrderedDict"}, nil
	case *types.ObjectClass:
		return nil, &NotAllowedError{Module: "__builtin__", Name: "object"}
	case *types.Reconstructor:
		return nil, &NotAllowedError{Module: "copy_reg", Name: "_reconstructor"}
	case *types.Tuple, *types.List, *types.Dict, *types.OrderedDict, *types.Set, *types.FrozenSet, *pyObject:
		if out, ok := c.done[v]; ok {
			return out, nil
		}
		if c.busy[v] {
			return nil, errors.New("object graph contains a reference cycle")
		}
		if c.depth >= maxNesting {
			return nil, fmt.Errorf("containers nested more than %d deep", maxNesting)
		}
		c.busy[v] = true
		c.depth++
		out, err := c.container(v)
		c.depth--
		delete(c.busy, v)
		if err != nil {
			return nil, err
		}
		c.done[v] = out
		return out, nil
	default:
		return nil, fmt.Errorf("unsupported value of type %T", v)
	}
}

func (c *converter) slice(items []any) ([]any, error) {
	out := make([]any, len(items))
	for i, x := range items {
		var err error
		if out[i], err = c.conv(x); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *converter) container(v any) (any, error) {
	switch v := v.(type) {
	case *types.Tuple:
		s, err := c.slice(*v)
		return Tuple(s), err
	case *types.List:
		return c.slice(*v)
	case *types.Dict:
		d := newDict("dict", len(*v))
		for _, e := range *v {
			if err := c.setItem(d, e.Key, e.Value); err != nil {
				return nil, err
			}
		}
		return d, nil
	case *types.OrderedDict:
		d := newDict("collections.OrderedDict", v.Len())
		for e := v.List.Front(); e != nil; e = e.Next() {
			ent := e.Value.(*types.OrderedDictEntry)
			if err := c.setItem(d, ent.Key, ent.Value); err != nil {
				return nil, err
			}
		}
		if len(v.PyDict) > 0 {
			names := make([]string, 0, len(v.PyDict))
			for k := range v.PyDict {
				names = append(names, k)
			}
			sort.Strings(names)
			d.Attrs = newDict("dict", len(names))
			for _, k := range names {
				if err := c.setItem(d.Attrs, k, v.PyDict[k]); err != nil {
					return nil, err
				}
			}
		}
		return d, nil
	case *types.Set:
		return c.set("set", len(*v), maps.Keys(*v))
	case *types.FrozenSet:
		return c.set("frozenset", len(*v), maps.Keys(*v))
	case *pyObject:
		o := &Object{Module: v.class.module, Name: v.class.name}
		var err error
		if o.Args, err = c.slice(v.args); err != nil {
			return nil, err
		}
		if o.State, err = c.conv(v.state); err != nil {
			return nil, err
		}
		return o, nil
	}
	panic(fmt.Sprintf("torchfile: container called with %T", v))
}

type byKey struct {
	keys  []string
	items []any
}

func (b byKey) Len() int           { return len(b.keys) }
func (b byKey) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byKey) Swap(i, j int) {
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
	b.items[i], b.items[j] = b.items[j], b.items[i]
}

// set converts an EMPTY_SET/FROZENSET value to the Object that REDUCE of
// builtins.set would give: Args = [elements]: sorted when all are str, int, float, bool or None,
// else in no particular order.
func (c *converter) set(name string, n int, each func(func(any) bool)) (any, error) {
	items := make([]any, 0, n)
	var err error
	each(func(k any) bool {
		var x any
		if x, err = c.conv(k); err != nil {
			return false
		}
		items = append(items, x)
		return true
	})
	if err != nil {
		return nil, err
	}
	// gopickle keeps sets in Go maps; sort scalar elements so that loading
	// the same file twice gives the same order.
	keys := make([]string, len(items))
	for i, x := range items {
		k, ok := canonKey(x)
		if !ok {
			return &Object{Module: "builtins", Name: name, Args: []any{items}}, nil
		}
		keys[i] = k
	}
	sort.Sort(byKey{keys, items})
	return &Object{Module: "builtins", Name: name, Args: []any{items}}, nil
}

func newDict(class string, n int) *Dict {
	return &Dict{Class: class, Keys: make([]any, 0, n), Values: make([]any, 0, n), index: map[string]int{}}
}

// setItem adds or replaces a key as Python would. Keys that are not
// scalars (tuples, objects) are appended without a duplicate check: Python
// compares them by value, and torch files never repeat them.
func (c *converter) setItem(d *Dict, rawKey, rawValue any) error {
	k, err := c.conv(rawKey)
	if err != nil {
		return err
	}
	v, err := c.conv(rawValue)
	if err != nil {
		return err
	}
	if canon, ok := canonKey(k); ok {
		if i, ok := d.index[canon]; ok {
			d.Values[i] = v
			return nil
		}
		d.index[canon] = len(d.Keys)
	}
	d.Keys = append(d.Keys, k)
	d.Values = append(d.Values, v)
	return nil
}

// canonKey is the Dict.index key of a scalar dict key. A str maps to itself
// (so Get needs no allocation) unless it starts with NUL, the prefix that
// marks the other types.
func canonKey(k any) (string, bool) {
	switch k := k.(type) {
	case string:
		return indexKey(k), true
	case int64:
		return "\x00i" + strconv.FormatInt(k, 10), true
	case float64:
		return "\x00f" + strconv.FormatFloat(k, 'g', -1, 64), true
	case bool:
		if k {
			return "\x00b1", true
		}
		return "\x00b0", true
	case nil:
		return "\x00n", true
	}
	return "", false
}
