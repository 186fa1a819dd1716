"""JPEG encoders for frames of 8-bit single-component images, producing the bytes DCMTK's IJG
codecs produce with Orthanc's settings (what Orthanc's DICOMweb plugin answers when a frame
is asked for in a JPEG transfer syntax):

- Baseline (1.2.840.10008.1.2.4.50) and Extended (.51): libjpeg through Pillow at Orthanc's
  lossy quality; Extended only differs by its SOF1 marker.
- Lossless (.57, predictor 6 as Orthanc asks; .70, predictor 1): written here, with Huffman
  tables optimised for the image as IJG computes them; 2 to 16 bits of precision, one or three
  interleaved components (`lossless`, also used by `transcode` for whole instances).

DCMTK makes every stream even-sized with a 0xFF fill byte before the final EOI marker.
"""

from __future__ import annotations

import io

import numpy as np

BASELINE = "1.2.840.10008.1.2.4.50"
EXTENDED = "1.2.840.10008.1.2.4.51"
LOSSLESS = "1.2.840.10008.1.2.4.57"
LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
SYNTAXES = frozenset({BASELINE, EXTENDED, LOSSLESS, LOSSLESS_SV1})
_JFIF = bytes.fromhex("ffe000104a46494600010100000100010000")
_ADOBE_RGB = bytes.fromhex("ffee000e41646f626500640000000000")  # APP14, transform 0: RGB as is


def even(stream: bytes) -> bytes:
    """DCMTK's padding: an odd-sized stream gets a 0xFF fill byte before its EOI marker."""
    return stream[:-2] + b"\xff\xff\xd9" if len(stream) % 2 else stream


def encode(pixels: bytes, rows: int, columns: int, syntax: str, quality: int = 90, samples: int = 1) -> bytes:
    """One 8-bit frame encoded in `syntax` (one of SYNTAXES): monochrome, or for the lossless
    syntaxes also RGB with interleaved samples (`samples` = 3)."""
    if samples != 1:
        if syntax in (BASELINE, EXTENDED) or samples != 3:
            raise ValueError(f"Cannot encode {samples} samples per pixel in {syntax}")
        color = np.frombuffer(pixels, dtype=np.uint8, count=rows * columns * 3).reshape(rows, columns, 3)
        return even(_lossless(color, 6 if syntax == LOSSLESS else 1))
    image = np.frombuffer(pixels, dtype=np.uint8, count=rows * columns).reshape(rows, columns)
    if syntax in (BASELINE, EXTENDED):
        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(image, "L").save(out, format="JPEG", quality=quality)
        stream = out.getvalue()
        if syntax == EXTENDED:
            at = stream.index(b"\xff\xc0")
            stream = stream[:at] + b"\xff\xc1" + stream[at + 2 :]
        return even(stream)
    return even(_lossless(image, 6 if syntax == LOSSLESS else 1))


def _predict(image: np.ndarray, selection: int, precision: int = 8) -> np.ndarray:
    """The prediction of every sample (PS3.5 / ITU T.81 H.1.2.1), first row and column as IJG;
    a colour image (rows, columns, 3) is predicted component by component."""
    if image.ndim == 3:
        return np.stack([_predict(image[:, :, c], selection, precision) for c in range(image.shape[2])], axis=2)
    x = image.astype(np.int32)
    pred = np.empty_like(x)
    ra = np.zeros_like(x)
    rb = np.zeros_like(x)
    rc = np.zeros_like(x)
    ra[:, 1:] = x[:, :-1]
    rb[1:, :] = x[:-1, :]
    rc[1:, 1:] = x[:-1, :-1]
    formulas = {
        1: ra,
        2: rb,
        3: rc,
        4: ra + rb - rc,
        5: ra + ((rb - rc) >> 1),
        6: rb + ((ra - rc) >> 1),
        7: (ra + rb) >> 1,
    }
    pred[:] = formulas[selection]
    pred[0, 1:] = x[0, :-1]  # first row: the sample on the left
    pred[1:, 0] = x[:-1, 0]  # first column: the sample above
    pred[0, 0] = 1 << (precision - 1)  # 2^(P - Pt - 1)
    return pred


def _optimal_table(freq: list[int]) -> tuple[list[int], list[int]]:
    """Code-length counts and symbols of IJG's jpeg_gen_optimal_table for these frequencies."""
    freq = [*freq[:256], 1]  # one reserved code point, so no code is all ones
    codesize = [0] * 257
    others = [-1] * 257
    while True:
        c1, v = -1, 1 << 62
        for i in range(257):
            if freq[i] and freq[i] <= v:
                v, c1 = freq[i], i
        c2, v = -1, 1 << 62
        for i in range(257):
            if freq[i] and freq[i] <= v and i != c1:
                v, c2 = freq[i], i
        if c2 < 0:
            break
        freq[c1] += freq[c2]
        freq[c2] = 0
        codesize[c1] += 1
        while others[c1] >= 0:
            c1 = others[c1]
            codesize[c1] += 1
        others[c1] = c2
        codesize[c2] += 1
        while others[c2] >= 0:
            c2 = others[c2]
            codesize[c2] += 1
    bits = [0] * 33
    for size in codesize:
        if size:
            bits[size] += 1
    for i in range(32, 16, -1):
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    i = 16
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1
    values = [s for length in range(1, 33) for s in range(256) if codesize[s] == length]
    return bits[1:17], values


def _codes(bits: list[int], values: list[int]) -> dict[int, tuple[int, int]]:
    """symbol -> (code, length), the canonical codes of a JPEG Huffman table."""
    out: dict[int, tuple[int, int]] = {}
    code = 0
    k = 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            out[values[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return out


def lossless(image: np.ndarray, precision: int, selection: int) -> bytes:
    """One frame, (rows, columns) or (rows, columns, 3) of unsigned samples of `precision` bits
    (higher bits are dropped), in JPEG Lossless with predictor `selection`; even-sized."""
    mask = (1 << precision) - 1
    return even(_lossless(image.astype(np.int32) & mask, selection, precision))


def _pack(fields: np.ndarray, widths: np.ndarray) -> bytes:
    """The bit string of the codes `fields` (each `widths` bits, most significant first),
    padded with ones to a byte and byte-stuffed; built by chunks so memory stays small."""
    chunk = 1 << 16
    pieces: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.uint8)
    for start in range(0, fields.size, chunk):
        field = fields[start : start + chunk]
        width = widths[start : start + chunk]
        total = int(width.sum())
        starts = np.cumsum(width) - width
        owner = np.repeat(np.arange(width.size), width)
        offset = np.arange(total) - starts[owner]
        bits = ((field[owner] >> (width[owner] - 1 - offset)) & 1).astype(np.uint8)
        if carry.size:
            bits = np.concatenate([carry, bits])
        whole = bits.size - bits.size % 8
        pieces.append(np.packbits(bits[:whole]))
        carry = bits[whole:]
    if carry.size:
        pieces.append(np.packbits(np.concatenate([carry, np.ones(8 - carry.size, dtype=np.uint8)])))
    data = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint8)
    return np.insert(data, np.flatnonzero(data == 0xFF) + 1, 0).tobytes()


def _lossless(image: np.ndarray, selection: int, precision: int = 8) -> bytes:
    rows, columns = image.shape[:2]
    components = image.shape[2] if image.ndim == 3 else 1
    diff = (image.astype(np.int32) - _predict(image, selection, precision)).ravel()  # samples interleaved
    diff = ((diff + 32768) & 0xFFFF) - 32768  # differences are taken modulo 2^16 (H.1.2.1)
    magnitude = np.abs(diff)
    nbits = np.zeros_like(magnitude)
    m = magnitude.copy()
    while m.any():
        nbits += m > 0
        m >>= 1
    freq = np.bincount(nbits, minlength=256).tolist()
    bits, values = _optimal_table(freq)
    table = _codes(bits, values)
    code_of = np.zeros(17, dtype=np.int64)
    len_of = np.zeros(17, dtype=np.int64)
    for symbol, (code, length) in table.items():
        code_of[symbol], len_of[symbol] = code, length
    extra_bits = np.where(nbits == 16, 0, nbits).astype(np.int64)  # SSSS 16: no extra bits
    extra = np.where(diff < 0, diff - 1, diff).astype(np.int64) & ((1 << extra_bits) - 1)
    field = (code_of[nbits] << extra_bits) | extra
    width = len_of[nbits] + extra_bits
    stuffed = _pack(field, width)
    header = b"\xff\xd8" + (_JFIF if components == 1 else _ADOBE_RGB)
    frame_spec = b"".join(bytes([c + 1, 0x11, 0]) for c in range(components))
    sof = bytes([precision]) + rows.to_bytes(2, "big") + columns.to_bytes(2, "big") + bytes([components]) + frame_spec
    header += b"\xff\xc3" + (len(sof) + 2).to_bytes(2, "big") + sof
    dht = bytes([0]) + bytes(bits) + bytes(values)  # one table, shared by the components
    header += b"\xff\xc4" + (len(dht) + 2).to_bytes(2, "big") + dht
    sos = bytes([components]) + b"".join(bytes([c + 1, 0]) for c in range(components)) + bytes([selection, 0, 0])
    header += b"\xff\xda" + (len(sos) + 2).to_bytes(2, "big") + sos
    return header + stuffed + b"\xff\xd9"


# --- JPEG Extended (process 4): 12-bit lossy ---------------------------------------------------

_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ]
)
"""The luminance quantization table of ITU T.81 Annex K (IJG's base table)."""


def _zigzag() -> np.ndarray:
    """Positions (row * 8 + column) of the 64 coefficients in zig-zag order."""
    order = sorted(
        ((r, c) for r in range(8) for c in range(8)), key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else p[1])
    )
    return np.array([r * 8 + c for r, c in order])


def _dct_matrix() -> np.ndarray:
    m = np.zeros((8, 8))
    for u in range(8):
        scale = np.sqrt(0.5) if u == 0 else 1.0
        for x in range(8):
            m[u, x] = scale / 2 * np.cos((2 * x + 1) * u * np.pi / 16)
    return m


def _category(values: np.ndarray) -> np.ndarray:
    """The number of bits of each magnitude (the SSSS category)."""
    magnitude = np.abs(values)
    out = np.zeros_like(magnitude)
    while magnitude.any():
        out += magnitude > 0
        magnitude = magnitude >> 1
    return out


def extended_12bit(image: np.ndarray, quality: int) -> bytes:
    """One monochrome frame of unsigned samples up to 12 bits in JPEG Extended (SOF1, 12-bit
    precision, Huffman tables optimised for the image, IJG's quality scaling of the Annex K
    luminance table); even-sized. Pillow's libjpeg has no 12-bit mode, hence this encoder."""
    rows, columns = image.shape
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = np.clip((_LUMINANCE * scale + 50) // 100, 1, 32767)
    pad_r, pad_c = (-rows) % 8, (-columns) % 8
    padded = np.pad(image.astype(np.float64) - 2048, ((0, pad_r), (0, pad_c)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // 8, 8, padded.shape[1] // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    m = _dct_matrix()
    coefficients = np.einsum("ux,bxy,vy->buv", m, blocks, m)
    quantized = np.rint(coefficients / table).astype(np.int64).reshape(-1, 64)[:, _zigzag()]
    dc = quantized[:, 0]
    dc_diff = np.diff(dc, prepend=0)
    # symbols: per block the DC category, then (run, size) pairs, ZRLs and an EOB
    symbols: list[int] = []  # (table << 8) | symbol
    extras: list[int] = []
    extra_bits: list[int] = []
    dc_size = _category(dc_diff)
    for b in range(quantized.shape[0]):
        size = int(dc_size[b])
        value = int(dc_diff[b])
        symbols.append(size)
        extras.append((value - 1 if value < 0 else value) & ((1 << size) - 1))
        extra_bits.append(size)
        ac = quantized[b, 1:]
        nonzero = np.flatnonzero(ac)
        previous = -1
        for k in nonzero.tolist():
            run = k - previous - 1
            while run > 15:
                symbols.append(0x100 | 0xF0)
                extras.append(0)
                extra_bits.append(0)
                run -= 16
            v = int(ac[k])
            s = abs(v).bit_length()
            symbols.append(0x100 | (run << 4) | s)
            extras.append((v - 1 if v < 0 else v) & ((1 << s) - 1))
            extra_bits.append(s)
            previous = k
        if previous < 62:
            symbols.append(0x100)  # EOB
            extras.append(0)
            extra_bits.append(0)
    sym = np.array(symbols)
    is_ac = sym >= 0x100
    dc_bits, dc_values = _optimal_table(np.bincount(sym[~is_ac], minlength=256).tolist())
    ac_bits, ac_values = _optimal_table(np.bincount(sym[is_ac] & 0xFF, minlength=256).tolist())
    code = np.zeros(512, dtype=np.int64)
    length = np.zeros(512, dtype=np.int64)
    for offset, (bits, values) in ((0, (dc_bits, dc_values)), (0x100, (ac_bits, ac_values))):
        for symbol, (c, n) in _codes(bits, values).items():
            code[offset + symbol], length[offset + symbol] = c, n
    extra_len = np.array(extra_bits, dtype=np.int64)
    fields = (code[sym] << extra_len) | np.array(extras, dtype=np.int64)
    widths = length[sym] + extra_len
    entropy = _pack(fields, widths)
    zigzag_table = table.reshape(64)[_zigzag()]
    if zigzag_table.max() > 255:
        dqt = b"\x10" + b"".join(int(q).to_bytes(2, "big") for q in zigzag_table)
    else:
        dqt = b"\x00" + bytes(int(q) for q in zigzag_table)
    out = b"\xff\xd8"
    out += b"\xff\xdb" + (len(dqt) + 2).to_bytes(2, "big") + dqt
    sof = b"\x0c" + rows.to_bytes(2, "big") + columns.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    out += b"\xff\xc1" + (len(sof) + 2).to_bytes(2, "big") + sof
    for cls, (bits, values) in ((0x00, (dc_bits, dc_values)), (0x10, (ac_bits, ac_values))):
        dht = bytes([cls]) + bytes(bits) + bytes(values)
        out += b"\xff\xc4" + (len(dht) + 2).to_bytes(2, "big") + dht
    sos = b"\x01\x01\x00\x00\x3f\x00"
    out += b"\xff\xda" + (len(sos) + 2).to_bytes(2, "big") + sos
    return even(out + entropy + b"\xff\xd9")
