"""HALCON 26.05's read_image and write_image for the file formats a deep-learning dataset uses (PNG, JPEG,
TIFF, BMP, and whatever else Pillow decodes). Images are numpy arrays as everywhere in opendl: (H, W) for one
channel, (H, W, C) otherwise, dtype uint8 (byte), uint16 (uint2), int16 (int2), int32 (int4) or float32 (real).

Decisions where HALCON's reference leaves the behaviour open or opendl has no HALCON counterpart:
- read_image: a file name that is not an existing file is tried with the known extensions appended (.tif,
  .tiff, .png, .jpg, .jpeg, .bmp, .gif, .pbm, .pgm, .ppm, .pnm, .pcx, .ras, .xwd, .jp2, .webp), in that order.
  HALCON also searches its 'image_dir' path list, which opendl does not have. One file name (a str, or a
  1-element list) gives one array; a list of several file names gives a list of arrays.
- Decoding: 8-bit gray -> uint8 (H, W); gray + alpha -> (H, W, 2); RGB -> (H, W, 3); RGBA -> (H, W, 4), as HALCON
  keeps the alpha channel as a fourth channel; palette images become RGB (RGBA with transparency); bilevel
  images become 0/255 bytes; CMYK and YCbCr JPEGs become RGB; 16-bit gray -> uint16; 32-bit integer TIFF ->
  int32; float TIFF -> float32. 16-bit colour PNGs (which Pillow reduces to 8 bits) are decoded by opendl's own
  PNG reader so that no precision is lost; interlaced ones of that kind are refused (5238).
- write_image: formats 'png' (optional zlib level 'png 0'..'png 9', or 'png best' / 'png fastest' /
  'png none'), 'jpeg' (optional quality 'jpeg 90'; Pillow's default 75 otherwise), 'tiff' (optional compression
  'tiff none' (default) / 'tiff deflate' / 'tiff deflate 9' / 'tiff lzw' / 'tiff packbits' / 'tiff jpeg 90'),
  'bmp'. The format's extension (.png, .jpg, .tif, .bmp) is appended unless the file name already ends in one
  of that format's extensions. PNG stores byte and uint2 images with 1 to 4 channels, JPEG byte images with 1 or
  3 channels, BMP byte images with 1 or 3 channels, TIFF byte, uint2, int2, int4 and real images with any number of
  channels (those Pillow cannot hold, signed 16-bit and multi-channel non-byte images, by opendl's own TIFF
  code); other combinations raise 1301 naming the format and the image type.
  fill_color (the value of pixels outside the domain in HALCON) must be one number; numpy images have no
  domain, so it has no effect.
- Errors: a missing file 5200 naming it, a file that cannot be decoded 5238 (H_ERR_WFF), a file that cannot be
  written 3142 (H_ERR_FILE_WR); bad parameter types 120n, bad values 130n (n = control parameter position).
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from ._convert import as_list
from .errors import H_ERR_FILE_WR, H_ERR_FNF, H_ERR_WFF, HOperatorError

__all__ = ["read_image", "write_image"]

READ_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pbm", ".pgm", ".ppm", ".pnm",
                   ".pcx", ".ras", ".xwd", ".jp2", ".webp")
WRITE_EXTENSIONS = {"png": (".png",), "jpeg": (".jpg", ".jpeg", ".jpe"), "tiff": (".tif", ".tiff"),
                    "bmp": (".bmp",)}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow is a dependency
        raise HOperatorError(5238, "reading and writing images needs Pillow (pip install Pillow)", "read_image") \
            from e
    return Image


# ---------------------------------------------------------------- reading


def _resolve(name: str, op: str) -> str:
    if os.path.isfile(name):
        return name
    for ext in READ_EXTENSIONS:
        for candidate in (name + ext, name + ext.upper()):
            if os.path.isfile(candidate):
                return candidate
    raise HOperatorError(H_ERR_FNF, f"image file {name!r} not found (also tried the extensions "
                                    f"{', '.join(READ_EXTENSIONS)})", op)


def _png_header(path: str):
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return width, height, depth, color, interlace


def _unfilter(raw: bytes, height: int, width: int, bpp: int, path: str, op: str) -> np.ndarray:
    """Reverses PNG's per-row filters (PNG spec 1.2, section 6). Sub and Up are vectorised; Average and Paeth
    depend on the reconstructed left neighbour, so they run pixel by pixel (over the bytes of a pixel at once)."""
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise HOperatorError(H_ERR_WFF, f"{path!r}: PNG image data is truncated", op)
    data = np.frombuffer(raw, np.uint8, height * (stride + 1)).reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        f, line = data[y, 0], data[y, 1:]
        if f == 0:
            cur = line.copy()
        elif f == 1:
            cur = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(stride)
        elif f == 2:
            cur = line + prev
        elif f in (3, 4):
            cur = np.empty(stride, np.uint8)
            li, pr = line.astype(np.int32), prev.astype(np.int32)
            left = np.zeros(bpp, np.int32)
            upleft = np.zeros(bpp, np.int32)
            for x in range(0, stride, bpp):
                up = pr[x:x + bpp]
                if f == 3:
                    pred = (left + up) >> 1
                else:
                    p = left + up - upleft
                    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
                    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
                left = (li[x:x + bpp] + pred) & 0xFF
                cur[x:x + bpp] = left
                upleft = up
        else:
            raise HOperatorError(H_ERR_WFF, f"{path!r}: unknown PNG filter type {int(f)}", op)
        out[y] = cur
        prev = cur
    return out


def _read_png16_color(path: str, op: str) -> np.ndarray:
    with open(path, "rb") as f:
        blob = f.read()
    pos, idat, hdr = 8, [], None
    while pos + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, _, color, _, _, interlace = hdr
    if interlace:
        raise HOperatorError(H_ERR_WFF, f"{path!r}: interlaced 16-bit colour PNGs are not supported", op)
    channels = {2: 3, 4: 2, 6: 4}[color]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise HOperatorError(H_ERR_WFF, f"{path!r}: corrupt PNG image data ({e})", op) from None
    rows = _unfilter(raw, height, width, channels * 2, path, op)
    return rows.view(">u2").reshape(height, width, channels).astype(np.uint16)


_CONVERT = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
            "RGBX": "RGB", "La": "LA", "RGBa": "RGBA"}
_DTYPES = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16, "I;16S": np.int16,
           "I": np.int32, "F": np.float32}


# ---------------------------------------------------------------- minimal TIFF (types Pillow cannot hold)
# Pillow has no image mode for signed 16-bit pixels or for multi-channel images of more than 8 bits, which
# HALCON writes and reads as TIFF. opendl writes those itself (one strip, chunky, uncompressed or deflate) and
# reads them back (also from other writers as long as they use strips, no predictor, and no or deflate
# compression).

_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}
_SAMPLE_DTYPES = {(1, 8): np.uint8, (1, 16): np.uint16, (2, 16): np.int16, (2, 32): np.int32, (1, 32): np.uint32,
                  (3, 32): np.float32, (3, 64): np.float64, (2, 8): np.int8}


def _tiff_ifd(path: str):
    """Tag -> tuple of values of the first IFD of a TIFF file, or None for other files."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:4] not in (b"II*\0", b"MM\0*"):
        return None
    e = "<" if blob[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(e + "I", blob[4:8])
        (count,) = struct.unpack(e + "H", blob[offset:offset + 2])
        tags = {}
        for i in range(count):
            tag, typ, n, val = struct.unpack(e + "HHI4s", blob[offset + 2 + 12 * i:offset + 14 + 12 * i])
            code = _TIFF_TYPES.get(typ)
            if code is None:
                continue
            size = struct.calcsize(code) * n
            raw = val[:size] if size <= 4 else blob[struct.unpack(e + "I", val)[0]:][:size]
            tags[tag] = struct.unpack(e + code * n, raw)
    except struct.error:
        return None
    tags["endian"] = e
    return tags


def _tiff_needs_own_reader(tags: dict) -> bool:
    bits = tags.get(258, (1,))[0]
    spp = tags.get(277, (1,))[0]
    fmt = tags.get(339, (1,))[0]
    return (bits > 8 and spp > 1) or (bits == 16 and fmt == 2) or (bits == 8 and spp not in (1, 3, 4))


def _read_tiff(path: str, tags: dict, op: str) -> np.ndarray:
    width, height = tags[256][0], tags[257][0]
    spp, bits, fmt = tags.get(277, (1,))[0], tags.get(258, (1,))[0], tags.get(339, (1,))[0]
    comp, planar, pred = tags.get(259, (1,))[0], tags.get(284, (1,))[0], tags.get(317, (1,))[0]
    dtype = _SAMPLE_DTYPES.get((fmt, bits))
    if dtype is None or comp not in (1, 8, 32946) or planar != 1 or pred != 1 or 273 not in tags:
        raise HOperatorError(H_ERR_WFF, f"{path!r}: this TIFF layout (compression {comp}, predictor {pred}, "
                                        f"planar {planar}, {bits}-bit format {fmt}) is not supported", op)
    with open(path, "rb") as f:
        blob = f.read()
    parts = []
    for off, n in zip(tags[273], tags[279]):
        chunk = blob[off:off + n]
        parts.append(zlib.decompress(chunk) if comp != 1 else chunk)
    need = width * height * spp * bits // 8
    data = b"".join(parts)
    if len(data) < need:
        raise HOperatorError(H_ERR_WFF, f"{path!r}: TIFF image data is truncated", op)
    arr = np.frombuffer(data[:need], np.dtype(dtype).newbyteorder(tags["endian"])).astype(dtype)
    arr = arr.reshape(height, width, spp) if spp > 1 else arr.reshape(height, width)
    if arr.dtype == np.uint32:
        arr = arr.astype(np.int32)
    return np.ascontiguousarray(arr)


def _write_tiff(arr: np.ndarray, path: str, deflate_level) -> None:
    height, width = arr.shape[:2]
    spp = 1 if arr.ndim == 2 else arr.shape[2]
    bits = arr.dtype.itemsize * 8
    fmt = {"u": 1, "i": 2, "f": 3}[arr.dtype.kind]
    data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    if deflate_level is not None:
        data = zlib.compress(data, deflate_level)
    rgb = spp >= 3 and arr.dtype.kind == "u"
    entries = [(256, 4, [width]), (257, 4, [height]), (258, 3, [bits] * spp), (259, 3, [8 if deflate_level is
                                                                                      not None else 1]),
               (262, 3, [2 if rgb else 1]), (273, 4, [0]), (277, 3, [spp]), (278, 4, [height]),
               (279, 4, [len(data)]), (284, 3, [1])]
    extra = spp - (3 if rgb else 1)
    if extra > 0:
        entries.append((338, 3, [0] * extra))
    entries.append((339, 3, [fmt] * spp))
    data_off = 8
    ifd_off = data_off + len(data) + (len(data) & 1)
    ext_off = ifd_off + 2 + 12 * len(entries) + 4
    ifd, ext = [struct.pack("<H", len(entries))], []
    for tag, typ, values in entries:
        if tag == 273:
            values = [data_off]
        code = _TIFF_TYPES[typ]
        raw = struct.pack("<" + code * len(values), *values)
        if len(raw) <= 4:
            ifd.append(struct.pack("<HHI", tag, typ, len(values)) + raw.ljust(4, b"\0"))
        else:
            pos = ext_off + sum(len(x) for x in ext)
            ifd.append(struct.pack("<HHII", tag, typ, len(values), pos))
            ext.append(raw + (b"\0" if len(raw) & 1 else b""))
    ifd.append(struct.pack("<I", 0))
    with open(path, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", ifd_off) + data + b"\0" * (len(data) & 1) + b"".join(ifd)
                + b"".join(ext))


def _tiff_int16(im) -> bool:
    """Pillow widens signed 16-bit TIFFs to 32-bit mode 'I'; the TIFF tags tell them apart."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return False
    bits, fmt = tags.get(258), tags.get(339)
    first = (lambda v: v[0] if isinstance(v, tuple) else v)
    return first(bits) == 16 and first(fmt) == 2


def _read_one(name, op: str) -> np.ndarray:
    if not isinstance(name, (str, os.PathLike)):
        raise HOperatorError(1201, f"file_name must hold strings, got {type(name).__name__} {name!r}", op)
    path = _resolve(os.fspath(name), op)
    hdr = _png_header(path)
    if hdr is not None and hdr[2] == 16 and hdr[3] in (2, 4, 6):
        return _read_png16_color(path, op)
    tiff = _tiff_ifd(path)
    if tiff is not None and _tiff_needs_own_reader(tiff):
        return _read_tiff(path, tiff, op)
    image_mod = _pil()
    try:
        with image_mod.open(path) as im:
            im.seek(0)
            mode = im.mode
            if mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
            elif mode in _CONVERT:
                im = im.convert(_CONVERT[mode])
            else:
                im.load()
            arr = np.asarray(im)
            mode = im.mode
            if mode == "I" and _tiff_int16(im):
                mode = "I;16S"
    except HOperatorError:
        raise
    except Exception as e:  # Pillow raises many types for undecodable files
        raise HOperatorError(H_ERR_WFF, f"{path!r} cannot be read as an image: {e}", op) from None
    if mode in _DTYPES:
        arr = arr.astype(_DTYPES[mode], copy=False)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.float32):
        raise HOperatorError(H_ERR_WFF, f"{path!r}: pixel type {arr.dtype} (mode {mode}) is not supported", op)
    return np.ascontiguousarray(arr)


def read_image(file_name):
    """Reads an image file into a numpy array (see the module notes for the pixel types). A list of several
    file names reads them all and returns a list of arrays."""
    op = "read_image"
    if isinstance(file_name, os.PathLike):
        return _read_one(file_name, op)
    names = as_list(file_name)
    if not names:
        raise HOperatorError(1401, "file_name is empty; give at least one file name", op)
    if len(names) == 1:
        return _read_one(names[0], op)
    return [_read_one(n, op) for n in names]


# ---------------------------------------------------------------- writing


def _parse_format(fmt, op: str):
    items = as_list(fmt)
    if len(items) != 1 or not isinstance(items[0], str):
        raise HOperatorError(1201, f"format must be one string such as 'png' or 'jpeg 90', got {fmt!r}", op)
    words = items[0].split()
    if not words:
        raise HOperatorError(1301, "format is empty", op)
    kind, opts = words[0].lower(), [w.lower() for w in words[1:]]
    kind = {"tif": "tiff", "jpg": "jpeg"}.get(kind, kind)
    if kind not in WRITE_EXTENSIONS:
        raise HOperatorError(1301, f"unknown image format {items[0]!r} (supported: 'png', 'jpeg', 'tiff', 'bmp')",
                             op)
    save = {}

    def bad():
        return HOperatorError(1301, f"invalid options in format {items[0]!r}", op)

    def number(text, lo, hi):
        try:
            v = int(text)
        except ValueError:
            raise bad() from None
        if not lo <= v <= hi:
            raise HOperatorError(1301, f"format {items[0]!r}: {v} is outside {lo}..{hi}", op)
        return v

    if kind == "png":
        if len(opts) > 1:
            raise bad()
        if opts:
            named = {"best": 9, "fastest": 1, "none": 0}
            save["level"] = named[opts[0]] if opts[0] in named else number(opts[0], 0, 9)
    elif kind == "jpeg":
        if len(opts) > 1:
            raise bad()
        if opts:
            save["quality"] = number(opts[0], 0, 100)
    elif kind == "tiff":
        if opts:
            comp = {"none": None, "deflate": "tiff_adobe_deflate", "lzw": "tiff_lzw", "packbits": "packbits",
                    "jpeg": "jpeg"}
            if opts[0] not in comp or len(opts) > 2 or (len(opts) == 2 and opts[0] not in ("deflate", "jpeg")):
                raise bad()
            if comp[opts[0]]:
                save["compression"] = comp[opts[0]]
            if len(opts) == 2:
                save["quality" if opts[0] == "jpeg" else "compress_level"] = \
                    number(opts[1], 0, 100 if opts[0] == "jpeg" else 9)
    elif opts:
        raise bad()
    return kind, save


def _check_image(image, kind: str, op: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise HOperatorError(1201, f"image must be a numpy array, got {type(image).__name__}", op)
    arr = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise HOperatorError(1201, f"image has shape {image.shape}; expected (height, width) or "
                                   "(height, width, channels)", op)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    dt = arr.dtype
    ok = {
        "png": (dt == np.uint8 or dt == np.uint16) and channels <= 4,
        "jpeg": dt == np.uint8 and channels in (1, 3),
        "bmp": dt == np.uint8 and channels in (1, 3),
        "tiff": dt in (np.uint8, np.uint16, np.int16, np.int32, np.float32),
    }[kind]
    if not ok:
        raise HOperatorError(1301, f"format '{kind}' cannot store a {channels}-channel {dt} image", op)
    return np.ascontiguousarray(arr)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _write_png16_color(arr: np.ndarray, path: str, level: int) -> None:
    height, width, channels = arr.shape
    color = {2: 4, 3: 2, 4: 6}[channels]
    rows = arr.astype(">u2").reshape(height, width * channels).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    blob = (_PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw, level)) + _png_chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(blob)


def write_image(image, format, fill_color, file_name):  # noqa: A002 (HALCON's parameter name)
    """Writes an image in the given format; see the module notes for formats, options and the extension rule."""
    op = "write_image"
    kind, save = _parse_format(format, op)
    fill = as_list(fill_color)
    if len(fill) != 1 or isinstance(fill[0], (bool, str)) or not isinstance(fill[0], (int, float, np.number)):
        raise HOperatorError(1202, f"fill_color must be one number, got {fill_color!r}", op)
    names = [file_name] if isinstance(file_name, os.PathLike) else as_list(file_name)
    if len(names) != 1 or not isinstance(names[0], (str, os.PathLike)) or not os.fspath(names[0]):
        raise HOperatorError(1203, f"file_name must be one file name, got {file_name!r}", op)
    path = os.fspath(names[0])
    if not path.lower().endswith(WRITE_EXTENSIONS[kind]):
        path += WRITE_EXTENSIONS[kind][0]
    arr = _check_image(image, kind, op)
    try:
        if kind == "png" and arr.dtype == np.uint16 and arr.ndim == 3:
            _write_png16_color(arr, path, save.get("level", 6))
            return
        if kind == "tiff" and (arr.dtype == np.int16 or (arr.ndim == 3 and (arr.dtype != np.uint8
                                                                         or arr.shape[2] not in (3, 4)))):
            if save.get("compression") not in (None, "tiff_adobe_deflate"):
                raise HOperatorError(1301, f"TIFF compression {save['compression']!r} is not available for "
                                           f"{arr.dtype} images with {1 if arr.ndim == 2 else arr.shape[2]} "
                                           "channel(s); use 'tiff' or 'tiff deflate'", op)
            level = save.get("compress_level", 6) if "compression" in save else None
            _write_tiff(arr, path, level)
            return
        pil = _pil().fromarray(arr)
        if kind == "png" and "level" in save:
            save = {"compress_level": save["level"]}
        pil.save(path, format={"jpeg": "JPEG", "png": "PNG", "tiff": "TIFF", "bmp": "BMP"}[kind], **save)
    except OSError as e:
        raise HOperatorError(H_ERR_FILE_WR, f"cannot write {path!r}: {e.strerror or e}", op) from None
