// Package testutil holds the helpers that numeric tests share: tolerance
// comparisons that report like "what[i] = got, want want (tol)", and
// reading golden tensors from safetensors fixtures.
//
// Close fails a test unless |got[i] − want[i]| ≤ abs + rel·|want[i]| for
// every i; MaxAbs gives the largest magnitude of a slice, to scale a
// tolerance by; Golden reads every F32 tensor of a safetensors file, by
// name.
//
// Invariants: NaN never passes Close (a NaN on either side fails it), and
// MaxAbs of a slice holding NaN is NaN, so a tolerance scaled by it fails
// rather than passes. Close fails at the first element out of tolerance,
// and on a length mismatch.
package testutil
