// Package torchfile reads files written by PyTorch's torch.save: the zip
// container (torch ≥ 1.6, file starts "PK\x03\x04") and the legacy
// concatenated-pickle container (magic number 0x1950a86a20f9469cfc6c,
// protocol 1001). It unpickles the object graph with gopickle's pickle
// package and a thin torch layer of its own (persistent ids, typed storages,
// torch._utils._rebuild_tensor_v2), never with gopickle's pytorch package.
//
// Python values map to Go as follows: int → int64 (*big.Int beyond int64),
// float → float64, str → string, bytes → []byte, None → nil, bool → bool,
// list → []any, tuple → Tuple, dict and collections.OrderedDict → *Dict
// (insertion order kept), torch.Tensor and nn.Parameter → *Tensor, bare
// globals such as torch.float32 → Global, allow-listed class instances
// (torch.device, the transcoder config dataclass, …) → *Object.
//
// Shape key: a Tensor is (Shape...) row-major; element multi-index i lives at
// storage element Offset + Σ_k i_k·Stride_k, exactly as torch defines it.
//
// Invariants:
//   - Nothing from the file is ever executed or used to construct an arbitrary
//     object: a class that is not on the allow-list is an error naming it
//     (LoadOptions.AllowClasses extends the list with opaque objects).
//   - No input makes Load panic or allocate from a size the input does not
//     back: every pickle is first scanned opcode by opcode (like Python's
//     pickletools.genops) and every length field is checked against the bytes
//     that remain before gopickle sees it; memo references, MARK nesting
//     (≤ 4096) and stack depth are checked in the same pass; converted values
//     nest at most 1000 deep and may not contain themselves; any panic left in
//     gopickle is recovered and returned as an error. Memory stays linear in
//     the input size (a deflated zip record, which torch never writes, grows
//     with the bytes actually inflated, up to its declared size).
//   - Every tensor view is checked against its storage when it is built and
//     again on every read: non-negative sizes and strides, no overflow, and
//     Offset + Σ (Shape_k−1)·Stride_k inside the storage. A tensor may have
//     more elements than its storage only through zero strides (torch's
//     expand), up to LoadOptions.MaxExpandedElements.
//   - Storages alias the input: Load maps the file read-only (syscall.Mmap on
//     linux, reading it elsewhere) and unmaps it once no tensor refers to it;
//     LoadBytes slices the caller's buffer, which must then stay unchanged.
//     Tensor accessors always return fresh copies, so no mapped memory
//     escapes. (As with any mapping, truncating the file while it is mapped
//     makes later reads fault.)
//   - Zip records are CRC-checked; only little-endian files are supported
//     (the zip "byteorder" record, the legacy sys_info little_endian flag).
package torchfile
