#!/usr/bin/env python3
"""Independent cross-check of our GGUF writer and its Q8_0 ... IQ4_XS block layouts.

Runs gguf_crosscheck_writer (argv[1]) to write a file, then parses the GGUF container with
Python's struct module (no code shared with the C++ reader) and decodes the Q8_0, Q4_0, Q5_0,
Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL and IQ4_XS blocks with numpy, following the GGUF specification
(ggml's block_q8_0, block_q4_0, block_q5_0, block_q5_1, block_q2_K, block_q3_K, block_q5_K,
block_iq4_nl, block_iq4_xs):
  Q8_0: 34-byte blocks = fp16 d, then 32 int8 q;         value = d * q
  Q4_0: 18-byte blocks = fp16 d, then 16 bytes of nibbles; value = (nibble - 8) * d,
        low nibbles are elements 0..15, high nibbles elements 16..31.
  Q5_0: 22-byte blocks = fp16 d, then qh (4 bytes, a little-endian uint32 of fifth bits), then
        16 bytes of nibbles; value = (q - 16) * d where element j < 16 is the low nibble of
        byte j with bit j of qh as bit 4, element j + 16 the high nibble with bit j + 16.
  Q5_1: 24-byte blocks = fp16 d, fp16 m, then qh and 16 bytes of nibbles as Q5_0's;
        value = q * d + m, q in [0, 31].
  Q5_K: 176-byte super-blocks of 256 = fp16 d, fp16 dmin, 12 bytes sc of 6-bit scales and mins
        (sub-block s < 4: scale = sc[s] & 63, min = sc[s + 4] & 63; s >= 4: scale =
        (sc[s + 4] & 15) | (sc[s - 4] >> 6) << 4, min = (sc[s + 4] >> 4) | (sc[s] >> 6) << 4),
        32 bytes qh, 128 bytes qs; element 64c + l (c = 0..3, l = 0..31, sub-block 2c) is the
        low nibble of qs[32c + l] with bit 2c of qh[l] as bit 4, element 64c + 32 + l (sub-block
        2c + 1) the high nibble with bit 2c + 1; value = d * scale * q - dmin * min.
  IQ4_NL: 18-byte blocks = fp16 d, then 16 bytes of 4-bit indices in Q4_0's order (low nibbles
        elements 0..15, high nibbles 16..31); value = d * IQ4NL[index], IQ4NL the format's fixed
        table of 16 values from -127 to 113.
  IQ4_XS: 136-byte super-blocks of 256 = fp16 d, u16 scales_h, 4 bytes scales_l, 128 bytes qs;
        sub-block s = 0..7 (elements 32s..32s+31) has the 6-bit scale ls = (scales_l[s // 2] >>
        4 (s % 2)) & 15 | ((scales_h >> 2s) & 3) << 4 and reads qs[16s..16s+15] as one IQ4_NL
        block's indices; value = d * (ls - 32) * IQ4NL[index].
  Q3_K: 110-byte super-blocks of 256 = 32 bytes hmask, 64 bytes qs, 12 bytes sc, fp16 d; element
        128n + 32j + l (n = 0..1, j = 0..3, l = 0..31) has the 2-bit field (qs[32n + l] >> 2j) & 3
        and the high bit (hmask[l] >> (4n + j)) & 1, q = field - 4 where the high bit is clear;
        sub-block s = element // 16 has the 6-bit field (s < 8: sc[s] & 15, else sc[s - 8] >> 4)
        | ((sc[8 + s % 4] >> 2 (s // 4)) & 3) << 4, its scale that field - 32;
        value = d * scale * q.
  Q2_K: 84-byte super-blocks of 256 = 16 bytes sc, 64 bytes qs, fp16 d, fp16 dmin; element
        128n + 32j + l has q = (qs[32n + l] >> 2j) & 3; sub-block s = element // 16 has the scale
        sc[s] & 15 and the min sc[s] >> 4; value = d * scale * q - dmin * min.
Checks: the numpy decode equals our Dequantize() output bit for bit; the decoded values are within
the stated error bounds of the originals; F16 equals numpy's float16 rounding of the originals;
BF16 equals round-to-nearest-even truncation; metadata reads back with the right types and values.
Needs Debian's python3-numpy; a missing numpy is a failure, not a skip.
"""
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    sys.exit("FAIL: numpy is missing: apt-get install python3-numpy")

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
          11: "<q", 12: "<d"}
GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 6: ("Q5_0", 32, 22),
        7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
        13: ("Q5_K", 256, 176), 20: ("IQ4_NL", 32, 18), 23: ("IQ4_XS", 256, 136),
        30: ("BF16", 1, 2)}
IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                 dtype=np.float32)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.data[self.pos:self.pos + n]
        assert len(s) == n, "string runs past the end"
        self.pos += n
        return s.decode("utf-8")

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        return self.take(SCALAR[t])


def parse(data):
    r = Reader(data)
    assert data[:4] == b"GGUF", "bad magic"
    r.pos = 4
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    assert version == 3, version
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        t = r.take("<I")
        meta[key] = (t, r.value(t))
    tensors = {}
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("<Q") for _ in range(r.take("<I"))]
        ttype, offset = r.take("<I"), r.take("<Q")
        tensors[name] = (dims, ttype, offset)
    align = meta.get("general.alignment", (4, 32))[1]
    data_start = (r.pos + align - 1) // align * align
    out = {}
    for name, (dims, ttype, offset) in tensors.items():
        assert offset % align == 0, (name, offset)
        _, block, size = GGML[ttype]
        n = int(np.prod(dims))
        nbytes = n // block * size
        start = data_start + offset
        assert start + nbytes <= len(data), name
        out[name] = (dims, GGML[ttype][0], data[start:start + nbytes])
    return meta, out


def decode_q8_0(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


def decode_q4_0(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)  # elements 0..15, then 16..31
    return (q * d).reshape(-1)


def decode_q5_0(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 22)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qh = blocks[:, 2:6].copy().view("<u4")                      # [n_blocks, 1]
    qs = blocks[:, 6:].astype(np.int32)
    j = np.arange(16, dtype=np.uint32)
    lo = (qs & 0x0F) | (((qh >> j) & 1) << 4).astype(np.int32)
    hi = (qs >> 4) | (((qh >> (j + 16)) & 1) << 4).astype(np.int32)
    q = np.concatenate([lo, hi], axis=1).astype(np.float32) - 16  # elements 0..15, 16..31
    return (q * d).reshape(-1)


def decode_q5_1(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 24)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)   # [n_blocks, 1]
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qh = blocks[:, 4:8].copy().view("<u4")                          # [n_blocks, 1]
    qs = blocks[:, 8:].astype(np.int32)
    j = np.arange(16, dtype=np.uint32)
    lo = (qs & 0x0F) | (((qh >> j) & 1) << 4).astype(np.int32)
    hi = (qs >> 4) | (((qh >> (j + 16)) & 1) << 4).astype(np.int32)
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)        # elements 0..15, 16..31
    return (q * d + m).reshape(-1)


def decode_q5_k(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 176)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)     # [n_blocks, 1]
    dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    sc = blocks[:, 4:16].astype(np.int32)
    scale = np.empty((len(blocks), 8), dtype=np.int32)
    mins = np.empty((len(blocks), 8), dtype=np.int32)
    for s in range(8):
        if s < 4:
            scale[:, s], mins[:, s] = sc[:, s] & 63, sc[:, s + 4] & 63
        else:
            scale[:, s] = (sc[:, s + 4] & 0x0F) | (sc[:, s - 4] >> 6) << 4
            mins[:, s] = (sc[:, s + 4] >> 4) | (sc[:, s] >> 6) << 4
    qh = blocks[:, 16:48].astype(np.int32)
    qs = blocks[:, 48:].astype(np.int32)
    q = np.empty((len(blocks), 256), dtype=np.int32)
    for c in range(4):
        nib = qs[:, 32 * c:32 * c + 32]
        q[:, 64 * c:64 * c + 32] = (nib & 0x0F) | ((qh >> (2 * c)) & 1) << 4
        q[:, 64 * c + 32:64 * c + 64] = (nib >> 4) | ((qh >> (2 * c + 1)) & 1) << 4
    sub_d = d * scale.astype(np.float32)                               # [n_blocks, 8]
    sub_m = dmin * mins.astype(np.float32)
    values = np.repeat(sub_d, 32, axis=1) * q.astype(np.float32) - np.repeat(sub_m, 32, axis=1)
    return values.reshape(-1)


def decode_iq4_nl(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)   # [n_blocks, 1]
    qs = blocks[:, 2:]
    index = np.concatenate([qs & 0x0F, qs >> 4], axis=1)            # elements 0..15, then 16..31
    return (d * IQ4NL[index]).reshape(-1)


def decode_iq4_xs(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 136)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)   # [n_blocks, 1]
    scales_h = blocks[:, 2:4].copy().view("<u2").astype(np.int32)
    values = np.empty((len(blocks), 256), dtype=np.float32)
    for s in range(8):
        ls = (blocks[:, 4 + s // 2].astype(np.int32) >> (4 * (s % 2))) & 15
        ls = ls | ((scales_h[:, 0] >> (2 * s)) & 3) << 4
        dl = d[:, 0] * (ls - 32).astype(np.float32)
        qs = blocks[:, 8 + 16 * s:24 + 16 * s]
        values[:, 32 * s:32 * s + 16] = dl[:, None] * IQ4NL[qs & 0x0F]
        values[:, 32 * s + 16:32 * s + 32] = dl[:, None] * IQ4NL[qs >> 4]
    return values.reshape(-1)


def decode_q3_k(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 110)
    hmask = blocks[:, 0:32].astype(np.int32)
    qs = blocks[:, 32:96].astype(np.int32)
    sc = blocks[:, 96:108].astype(np.int32)
    d = blocks[:, 108:110].copy().view(np.float16).astype(np.float32)  # [n_blocks, 1]
    q = np.empty((len(blocks), 256), dtype=np.int32)
    for n in range(2):
        for j in range(4):
            e = 128 * n + 32 * j
            field = (qs[:, 32 * n:32 * n + 32] >> (2 * j)) & 3
            high = (hmask >> (4 * n + j)) & 1
            q[:, e:e + 32] = np.where(high == 1, field, field - 4)
    scale = np.empty((len(blocks), 16), dtype=np.int32)
    for s in range(16):
        low = sc[:, s] & 15 if s < 8 else sc[:, s - 8] >> 4
        scale[:, s] = (low | ((sc[:, 8 + s % 4] >> (2 * (s // 4))) & 3) << 4) - 32
    sub_d = d * scale.astype(np.float32)                                # [n_blocks, 16]
    return (np.repeat(sub_d, 16, axis=1) * q.astype(np.float32)).reshape(-1)


def decode_q2_k(raw):
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 84)
    sc = blocks[:, 0:16].astype(np.int32)
    qs = blocks[:, 16:80].astype(np.int32)
    d = blocks[:, 80:82].copy().view(np.float16).astype(np.float32)    # [n_blocks, 1]
    dmin = blocks[:, 82:84].copy().view(np.float16).astype(np.float32)
    q = np.empty((len(blocks), 256), dtype=np.int32)
    for n in range(2):
        for j in range(4):
            e = 128 * n + 32 * j
            q[:, e:e + 32] = (qs[:, 32 * n:32 * n + 32] >> (2 * j)) & 3
    sub_d = d * (sc & 15).astype(np.float32)                            # [n_blocks, 16]
    sub_m = dmin * (sc >> 4).astype(np.float32)
    values = np.repeat(sub_d, 16, axis=1) * q.astype(np.float32) - np.repeat(sub_m, 16, axis=1)
    return values.reshape(-1)


def check_super_blocks(name, ttype_want, tensors, decode, y, fraction):
    """`name` (4 super-blocks of y) decodes as our Dequantize() does, within fraction * amax of y
    in every super-block; returns the decoded values."""
    dims, ttype, _ = tensors[name]
    assert dims == [256, 4] and ttype == ttype_want, (dims, ttype)
    theirs = check_decode(name, tensors, decode)
    for b in range(0, y.size, 256):
        amax = np.abs(y[b:b + 256]).max()
        err = np.abs(theirs[b:b + 256] - y[b:b + 256]).max()
        assert err <= fraction * amax, (name, b, err, amax)
        print(f"{name} super-block {b // 256}: max |err| {err:.4g} = amax * {err / amax:.3f}")
    print(f"{name}: {theirs.size} values decoded independently, identical")
    return theirs


def check_decode(name, tensors, decode):
    """Our Dequantize() output for `name` must equal the numpy decode bit for bit."""
    ours = f32(tensors[name + ".deq"][2])
    theirs = decode(tensors[name][2])
    if not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
        bad = np.nonzero(ours != theirs)[0][:5]
        sys.exit(f"FAIL: {name}: numpy decode differs from ours at {bad}: "
                 f"{theirs[bad]} vs {ours[bad]}")
    return theirs


def f32(raw):
    return np.frombuffer(raw, dtype=np.float32)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gguf_crosscheck.py PATH_TO_gguf_crosscheck_writer")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "crosscheck.gguf")
        subprocess.run([sys.argv[1], path], check=True)
        with open(path, "rb") as f:
            data = f.read()
    meta, tensors = parse(data)

    assert meta["general.architecture"] == (8, "crosscheck"), meta["general.architecture"]
    assert meta["general.alignment"] == (4, 64), meta["general.alignment"]
    assert meta["test.u32"] == (4, 123456)
    assert meta["test.f32"] == (6, 0.25)
    assert meta["test.strings"] == (9, ["a", "héllo", ""])
    assert meta["test.bool"] == (7, True)

    dims, ttype, raw = tensors["x"]
    assert dims == [64, 4] and ttype == "F32", (dims, ttype)
    x = f32(raw)

    cases = (("x.q8_0", decode_q8_0, 1.0 / 254), ("x.q4_0", decode_q4_0, 1.0 / 8),
             ("x.q5_0", decode_q5_0, 1.0 / 16))
    for name, decode, bound in cases:
        dims, ttype, raw = tensors[name]
        assert dims == [64, 4] and ttype == name[2:].upper(), (name, dims, ttype)
        theirs = check_decode(name, tensors, decode)
        # Stated bounds, per block of 32: |err| <= amax/254 (Q8_0), <= amax/8 (Q4_0),
        # <= amax/16 (Q5_0: a step, where the sign opposite the largest clamps at 15), +1%.
        for b in range(0, x.size, 32):
            amax = np.abs(x[b:b + 32]).max()
            err = np.abs(theirs[b:b + 32] - x[b:b + 32]).max()
            assert err <= bound * amax * 1.01 + 1e-7, (name, b, err, amax)
        print(f"{name}: {theirs.size} values decoded independently, identical; "
              f"max |err| {np.abs(theirs - x).max():.4g}")

    # Q5_K, on y (256 columns: one super-block per row). Stated bound, per super-block: |err| <=
    # R / 31, R the widest sub-block's range (max - min, the range including 0 as the fit's
    # min >= 0 does): half a step (R / 62) from rounding, plus the 6-bit scale and min, each
    # rounded by up to 1/126 of the super-block's largest (the scale's error times q <= 31), +1%.
    dims, ttype, _ = tensors["y.q5_k"]
    assert dims == [256, 4] and ttype == "Q5_K", (dims, ttype)
    y = f32(tensors["y"][2])
    theirs = check_decode("y.q5_k", tensors, decode_q5_k)
    for b in range(0, y.size, 256):
        sub = y[b:b + 256].reshape(8, 32)
        r = (sub.max(axis=1) - np.minimum(sub.min(axis=1), 0)).max()
        err = np.abs(theirs[b:b + 256] - y[b:b + 256]).max()
        assert err <= r / 31 * 1.01 + 1e-7, ("y.q5_k", b, err, r)
        print(f"y.q5_k super-block {b // 256}: max |err| {err:.4g} = range/{r / err:.0f}")
    print(f"y.q5_k: {theirs.size} values decoded independently, identical")
    # IQ4_XS, on y. Stated bound, per super-block: |err| <= 0.15 amax (IQ4_NL's per sub-block,
    # whose own amax is at most the super-block's, plus the 6-bit scale's rounding, at most half a
    # step of the largest sub-block scale / 32, times 127: amax / 64 more; tensor_type_test
    # measures <= 0.131).
    theirs = check_super_blocks("y.iq4_xs", "IQ4_XS", tensors, decode_iq4_xs, y, 0.15)
    assert np.all(theirs[3 * 256 + 6 * 32:3 * 256 + 7 * 32] == 0), "zero sub-block"

    # Q3_K, on y. Stated bound, per super-block: |err| <= 0.3 amax (a sub-block's values of the
    # sign opposite its extreme clamp at 3 steps of about amax / 4; the bound of the C++
    # round-trip test).
    check_super_blocks("y.q3_k", "Q3_K", tensors, decode_q3_k, y, 0.3)

    # Q2_K, on y. Stated bound, per super-block: |err| <= 0.55 amax (4 levels per sub-block of
    # 16 with the scale and min in 4 bits; the bound of the C++ round-trip test).
    check_super_blocks("y.q2_k", "Q2_K", tensors, decode_q2_k, y, 0.55)

    f16 = np.frombuffer(tensors["x.f16"][2], dtype=np.float16)
    assert np.array_equal(f16.view(np.uint16), x.astype(np.float16).view(np.uint16)), "F16"
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    bf16 = np.frombuffer(tensors["x.bf16"][2], dtype=np.uint16)
    assert np.array_equal(bf16, rounded), "BF16"
    # Q5_1, on x. Stated bound, per block of 32: |err| <= range / 62 (half a step of
    # (max - min) / 31), + amax / 1024 (d and m rounded to fp16 move the grid, so the top value
    # may clamp at 31), + 1%.
    dims, ttype, _ = tensors["x.q5_1"]
    assert dims == [64, 4] and ttype == "Q5_1", (dims, ttype)
    theirs = check_decode("x.q5_1", tensors, decode_q5_1)
    for b in range(0, x.size, 32):
        block = x[b:b + 32]
        r, amax = block.max() - block.min(), np.abs(block).max()
        err = np.abs(theirs[b:b + 32] - block).max()
        assert err <= (r / 62 + amax / 1024) * 1.01, ("x.q5_1", b, err, r)
    print(f"x.q5_1: {theirs.size} values decoded independently, identical; "
          f"max |err| {np.abs(theirs - x).max():.4g}")

    # IQ4_NL, on x. Stated bound, per block of 32: |err| <= 0.15 amax (half the widest gap of the
    # table, 23 of its 127, or the clamp at 113 of values opposite an extreme at -127, at a scale
    # the quantiser's search may move by a few percent; tensor_type_test measures <= 0.126).
    dims, ttype, _ = tensors["x.iq4_nl"]
    assert dims == [64, 4] and ttype == "IQ4_NL", (dims, ttype)
    theirs = check_decode("x.iq4_nl", tensors, decode_iq4_nl)
    for b in range(0, x.size, 32):
        block = x[b:b + 32]
        amax = np.abs(block).max()
        err = np.abs(theirs[b:b + 32] - block).max()
        assert err <= 0.15 * amax, ("x.iq4_nl", b, err, amax)
    print(f"x.iq4_nl: {theirs.size} values decoded independently, identical; "
          f"max |err| {np.abs(theirs - x).max():.4g}")

    print("F16/BF16: identical to numpy rounding; metadata OK")
    print("PASS")


if __name__ == "__main__":
    main()
