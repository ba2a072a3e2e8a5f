#!/usr/bin/env python3
"""Regenerates the golden files in testdata/numpy/ (run from this directory).

Made with numpy 1.24.2 (Debian bookworm's python3-numpy):
    /usr/bin/python3 gen_numpy.py
The tests compare ctxdep's writers byte for byte with these files and read
each of them back; see npy_test.go.
"""
import numpy as np
from numpy.lib import format as npf

out = "numpy/"
np.save(out + "i8_2x3.npy", np.arange(6, dtype="<i8").reshape(2, 3) - 2)
np.save(out + "i4_6x16.npy", np.arange(96, dtype="<i4").reshape(6, 16) * 1000 - 50257)
np.save(out + "i4_scalar.npy", np.array(42, dtype="<i4"))
np.save(out + "i4_empty.npy", np.zeros((0, 128), dtype="<i4"))
np.save(out + "i2_3.npy", np.array([-32768, 0, 32767], dtype="<i2"))
np.save(out + "u2_3.npy", np.array([0, 50256, 65535], dtype="<u2"))
np.save(out + "u4_2.npy", np.array([7, 4294967295], dtype="<u4"))
np.save(out + "u1_4.npy", np.array([0, 1, 128, 255], dtype="u1"))
np.save(out + "i1_2.npy", np.array([-128, 127], dtype="i1"))
np.save(out + "b1_3.npy", np.array([True, False, True]))
np.save(out + "i8_big.npy", np.array([1, 2**31], dtype="<i8"))
np.save(out + "f4_5.npy", np.array([0.5, -1.25, 3.0e-5, np.inf, -0.0], dtype="<f4"))
np.save(out + "f4_2x3x4.npy", (np.arange(24, dtype="<f4") / 7).reshape(2, 3, 4))
np.save(out + "f2_2x2.npy", np.array([[1, 0.1], [65504, -2.0**-24]], dtype="<f2"))
np.save(out + "f8_3.npy", np.array([0.1, -1e300, 2.5], dtype="<f8"))
np.save(out + "f4_fortran.npy", np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)))
np.save(out + "i4_bigendian.npy", np.arange(3, dtype=">i4"))
np.save(out + "c8_2.npy", np.array([1 + 2j, 3], dtype="<c8"))
# (10 + header length) is a multiple of 64 here, so numpy pads a whole 64 spaces.
np.save(out + "f4_aligned_header.npy", np.zeros((0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 10**11), dtype="<f4"))
for v in [(2, 0), (3, 0)]:
    with open(out + "i4_2x2_v%d.npy" % v[0], "wb") as f:
        npf.write_array(f, np.arange(4, dtype="<i4").reshape(2, 2), version=v)
