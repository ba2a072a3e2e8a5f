package torchfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// Dict is a Python dict or collections.OrderedDict, in insertion order.
// Keys[i] maps to Values[i]; a key pickled twice keeps its first position and
// its last value, as in Python (for str, int, float, bool and None keys).
type Dict struct {
	Keys   []any
	Values []any
	// Class is "dict" or "collections.OrderedDict".
	Class string
	// Attrs holds the instance attributes an OrderedDict was pickled with
	// (a state dict's "_metadata"), sorted by name; nil when there were none.
	Attrs *Dict

	index map[string]int // canonKey → position, built by the loader
}

func indexKey(key string) string {
	if len(key) > 0 && key[0] == 0 {
		return "\x00s" + key
	}
	return key
}

// Get returns the value stored under the string key, and whether it exists.
func (d *Dict) Get(key string) (any, bool) {
	if d == nil {
		return nil, false
	}
	if i, ok := d.index[indexKey(key)]; ok && i < len(d.Keys) && i < len(d.Values) {
		if k, ok := d.Keys[i].(string); ok && k == key {
			return d.Values[i], true
		}
	}
	// The index is missing or stale (a Dict built or edited by the caller).
	for i, k := range d.Keys {
		if s, ok := k.(string); ok && s == key && i < len(d.Values) {
			return d.Values[i], true
		}
	}
	return nil, false
}

// Len returns the number of entries.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.Keys)
}

// Tuple is a Python tuple. A Python list is a plain []any.
type Tuple []any

// Global is a bare reference to a Python global, such as the dtype
// torch.float32 (Module "torch", Name "float32").
type Global struct{ Module, Name string }

// String returns "module.Name".
func (g Global) String() string { return g.Module + "." + g.Name }

// Object is an instance of an allow-listed class, kept opaque: the arguments
// it was created with (REDUCE or NEWOBJ) and the state BUILD gave it. A
// dataclass such as sae_training.config.LanguageModelSAERunnerConfig has
// State = its __dict__ as a *Dict; torch.device("cuda", 0) has
// Args = ["cuda", int64(0)].
type Object struct {
	Module, Name string
	Args         []any
	State        any
}

// Attr returns the attribute name from State when State is a *Dict.
func (o *Object) Attr(name string) (any, bool) {
	if o == nil {
		return nil, false
	}
	d, ok := o.State.(*Dict)
	if !ok {
		return nil, false
	}
	return d.Get(name)
}

// LoadOptions adjusts loading. The zero value gives the defaults used by Load
// and LoadBytes.
type LoadOptions struct {
	// AllowClasses names further classes ("module.Name") that the pickle may
	// instantiate; each becomes an opaque *Object.
	AllowClasses []string
	// NoMmap makes Load read the whole file into memory instead of mapping it.
	NoMmap bool
	// MaxExpandedElements bounds the element count of a tensor that has more
	// elements than its storage (zero strides, torch's expand), since reading
	// it allocates that many elements without the file backing them.
	// Zero means DefaultMaxExpandedElements.
	MaxExpandedElements int
}

// DefaultMaxExpandedElements is the default LoadOptions.MaxExpandedElements:
// 16 Mi elements (64 MiB as float32).
const DefaultMaxExpandedElements = 1 << 24

// NotAllowedError reports a pickle that names a class off the allow-list.
type NotAllowedError struct{ Module, Name string }

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("pickle names class %q, which is not on the allow-list", e.Module+"."+e.Name)
}

// Load reads the torch.save file at path and returns its object graph.
func Load(path string) (any, error) { return LoadOptions{}.Load(path) }

// LoadBytes reads a torch.save file held in data. Tensors alias data, which
// must not change while they are in use.
func LoadBytes(data []byte) (any, error) { return LoadOptions{}.LoadBytes(data) }

// Load reads the torch.save file at path with these options.
func (o LoadOptions) Load(path string) (any, error) {
	var (
		data []byte
		m    *mapping
	)
	if !o.NoMmap {
		var err error
		m, err = mapFile(path)
		if err != nil && !errors.Is(err, errNoMmap) {
			return nil, fmt.Errorf("torchfile: %w", err) // *PathError names the path
		}
		if m != nil {
			data = m.data
		}
	}
	if m == nil {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("torchfile: %w", err) // *PathError names the path
		}
	}
	v, err := o.load(data, m)
	if err != nil {
		if m != nil {
			m.release()
		}
		return nil, fmt.Errorf("torchfile: %s: %w", path, err)
	}
	return v, nil
}

// LoadBytes reads a torch.save file held in data with these options.
func (o LoadOptions) LoadBytes(data []byte) (any, error) {
	v, err := o.load(data, nil)
	if err != nil {
		return nil, fmt.Errorf("torchfile: %w", err)
	}
	return v, nil
}

var zipMagic = []byte("PK\x03\x04")

func (o LoadOptions) load(data []byte, m *mapping) (any, error) {
	if o.MaxExpandedElements <= 0 {
		o.MaxExpandedElements = DefaultMaxExpandedElements
	}
	switch {
	case len(data) == 0:
		return nil, errors.New("empty file")
	case bytes.HasPrefix(data, zipMagic):
		return o.loadZip(data, m)
	case data[0] == 0x80: // pickle PROTO opcode: the legacy container
		return o.loadLegacy(data, m)
	default:
		return nil, fmt.Errorf("not a torch.save file: starts with %q, want a zip (PK\\x03\\x04) or a pickle (\\x80)", data[:min(len(data), 4)])
	}
}

// StateDict returns the tensor map inside obj: obj itself when it is a dict
// whose values are all tensors, else its "state_dict" or "model_state_dict"
// entry when that is such a dict.
func StateDict(obj any) (*Dict, error) {
	d, ok := obj.(*Dict)
	if !ok {
		return nil, fmt.Errorf("torchfile: state dict: top-level object is %s, not a dict", typeName(obj))
	}
	if allTensors(d) {
		return d, nil
	}
	for _, key := range []string{"state_dict", "model_state_dict"} {
		v, ok := d.Get(key)
		if !ok {
			continue
		}
		sd, ok := v.(*Dict)
		if !ok || !allTensors(sd) {
			return nil, fmt.Errorf("torchfile: state dict: entry %q is %s, not a dict of tensors", key, typeName(v))
		}
		return sd, nil
	}
	return nil, fmt.Errorf("torchfile: state dict: dict with keys %s holds no tensor map (no \"state_dict\" or \"model_state_dict\" entry)", keyList(d, 8))
}

func allTensors(d *Dict) bool {
	for _, v := range d.Values {
		if _, ok := v.(*Tensor); !ok {
			return false
		}
	}
	return true
}

func keyList(d *Dict, n int) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, k := range d.Keys {
		if i == n {
			fmt.Fprintf(&b, " … %d more", len(d.Keys)-n)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%#v", k)
	}
	b.WriteByte(']')
	return b.String()
}

// typeName describes a decoded value for error messages.
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case *Dict:
		return v.Class
	case Tuple:
		return "a tuple"
	case []any:
		return "a list"
	case *Tensor:
		return "a tensor"
	case *Object:
		return "a " + v.Module + "." + v.Name
	case Global:
		return "the global " + v.String()
	default:
		return fmt.Sprintf("a %T", v)
	}
}
