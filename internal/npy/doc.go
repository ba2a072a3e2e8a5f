// Package npy reads and writes NumPy .npy files holding plain numeric
// arrays: token ids ([S, T] int32 or int64, as `ctxdep tokenize` writes and
// `ctxdep cache --tokens` reads) and float arrays.
//
// Layout of a file (numpy/lib/format.py, "NEP 1"):
//
//	"\x93NUMPY" major minor  (8 bytes; versions 1.0, 2.0 and 3.0)
//	header length            (uint16 LE for 1.0, uint32 LE for 2.0 and 3.0)
//	header                   (a Python dict literal, padded with spaces, ending in '\n')
//	data                     (prod(shape) elements, C order for fortran_order False)
//
// The header reads, for example,
//
//	{'descr': '<i8', 'fortran_order': False, 'shape': (6, 16), }
//
// [ParseHeader] parses it with a small hand-written parser for exactly that
// grammar (keys in any order, either quote style, the tuples (), (5,) and
// (6, 16)); it never evaluates anything. Readers accept little-endian
// integer and float descrs and C order only, check that the shape's element
// count (computed with overflow checks) matches the bytes in the file before
// allocating, and return errors that name the file.
//
// Writers produce the same bytes numpy ≥ 1.24 writes with np.save: version
// 1.0 (2.0 if the header would not fit), keys sorted, the spare spaces numpy
// leaves for growing the first axis, and padding so that the data start at a
// multiple of 64 bytes. They write a temporary file next to the destination
// and rename it into place, so a failed write leaves nothing behind.
package npy
