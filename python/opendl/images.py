"""HALCON 26.05's read_image and write_image for the file formats a deep-learning dataset uses (PNG, JPEG,
TIFF, BMP, and whatever else Pillow decodes). Images are numpy arrays as everywhere in opendl: (H, W) for one
channel, (H, W, C) otherwise, dtype uint8 (byte), uint16 (uint2), int16 (int2), int32 (int4) or float32 (real).

The codecs are libraries: tifffile (with imagecodecs for LZW and JPEG) reads and writes every TIFF, pypng the
16-bit colour PNGs that Pillow cannot hold without losing precision, and Pillow everything else.

Decisions where HALCON's reference leaves the behaviour open or opendl has no HALCON counterpart:
- read_image: a file name that is not an existing file is tried with the known extensions appended (.tif,
  .tiff, .png, .jpg, .jpeg, .bmp, .gif, .pbm, .pgm, .ppm, .pnm, .pcx, .ras, .xwd, .jp2, .webp), in that order.
  HALCON also searches its 'image_dir' path list, which opendl does not have. One file name (a str, or a
  1-element list) gives one array; a list of several file names gives a list of arrays.
- Decoding: 8-bit gray -> uint8 (H, W); gray + alpha -> (H, W, 2); RGB -> (H, W, 3); RGBA -> (H, W, 4), as HALCON
  keeps the alpha channel as a fourth channel; palette images become RGB (RGBA with transparency); bilevel
  images become 0/255 bytes; CMYK and YCbCr JPEGs become RGB; 16-bit gray -> uint16; 16-bit colour PNGs
  (also interlaced ones) -> uint16 (H, W, C). TIFF: the first page; gray and RGB TIFFs keep their sample type
  (uint8, uint16, int16, int32, float32; uint32 becomes int32 and float64 float32 when every value fits, since
  opendl's images have no wider types; otherwise 5238 names the file and the values) and all their samples as
  channels, whether stored chunky or planar; palette, CMYK and min-is-white TIFFs are converted like the other
  formats. A file that decodes to no pixels (a 0 x N TIFF) raises 5238.
- write_image: formats 'png' (optional zlib level 'png 0'..'png 9', or 'png best' / 'png fastest' / 'png none'),
  'jpeg' (optional quality 'jpeg 90'; Pillow's default 75 otherwise), 'tiff' (optional compression 'tiff none'
  (default) / 'tiff deflate' / 'tiff deflate 9' / 'tiff lzw' / 'tiff packbits' / 'tiff jpeg' (quality 75) /
  'tiff jpeg 90'), 'bmp'. The format's extension (.png, .jpg, .tif, .bmp) is appended unless the file name already
  ends in one of that format's extensions. PNG stores byte and uint2 images with 1 to 4 channels, JPEG byte images
  with 1 or 3 channels, BMP byte images with 1 or 3 channels, TIFF byte, uint2, int2, int4 and real images with any
  number of channels and every compression except 'tiff jpeg', which takes byte images with 1 or 3 channels; other
  combinations raise 1301 naming the format and the image type. JPEG (also inside TIFF) stores at most 65500
  pixels per side (libjpeg's limit); larger images raise 1301. TIFFs with 3 or 4 channels of byte or uint2 are
  written as RGB (the fourth channel as alpha), all others as gray with extra samples. The file is written next
  to its final name and renamed over it only when the encoder succeeded, so a failed write_image leaves an
  existing file as it was.
  fill_color (the value of pixels outside the domain in HALCON) must be one number; numpy images have no
  domain, so it has no effect.
- Errors: a missing file 5200 naming it, a file that cannot be decoded 5238 (H_ERR_WFF), a file that cannot be
  written or an encoder failure 3142 (H_ERR_FILE_WR); bad parameter types 120n, bad values 130n (n = control
  parameter position; a NUL in file_name is a bad value, 1303).
"""

from __future__ import annotations

import os

import numpy as np

from ._convert import as_list
from .dicts import _write_atomically
from .errors import H_ERR_FNF, H_ERR_WFF, HOperatorError

__all__ = ["read_image", "write_image"]

READ_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pbm", ".pgm", ".ppm", ".pnm",
                   ".pcx", ".ras", ".xwd", ".jp2", ".webp")
WRITE_EXTENSIONS = {"png": (".png",), "jpeg": (".jpg", ".jpeg", ".jpe"), "tiff": (".tif", ".tiff"),
                    "bmp": (".bmp",)}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic TIFF and BigTIFF, both byte orders
_JPEG_MAX_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION, checked first: the encoders say "broken data stream"


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


def _read_png16_color(path: str):
    """A 16-bit PNG with more than one channel via pypng (Pillow reduces those to 8 bits), else None."""
    import png

    with open(path, "rb") as f:
        reader = png.Reader(file=f)
        reader.preamble()
        if reader.bitdepth != 16 or reader.planes == 1:
            return None
        width, height, rows, info = reader.read()
        values = np.stack([np.frombuffer(row, np.uint16) for row in rows])
    return values.reshape(height, width, info["planes"])


def _read_tiff(path: str):
    """The first page of a gray or RGB TIFF via tifffile, else None (palette, CMYK, min-is-white... are left
    to Pillow, which converts them)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        photometric = int(page.photometric)
        if not (photometric in (1, 2) or (photometric == 6 and int(page.compression) in (6, 7))):
            return None  # 1 min-is-black, 2 RGB, 6 YCbCr (decoded to RGB when JPEG-compressed)
        arr = page.asarray()
        if arr.ndim == 3 and int(page.planarconfig) == 2:
            arr = np.moveaxis(arr, 0, -1)
    return arr


def _narrowed(arr: np.ndarray, path: str, op: str) -> np.ndarray:
    """uint32 and float64 samples (TIFF) as opendl's int4 and real images; refused where a value does not fit,
    instead of wrapping to a negative number or overflowing to infinity."""
    if arr.dtype == np.uint32:
        if arr.size and int(arr.max()) > np.iinfo(np.int32).max:
            raise HOperatorError(H_ERR_WFF, f"{path!r}: uint32 values above 2^31-1 (here {int(arr.max())}) do not fit "
                                            "int4 (int32), the widest integer image type", op)
        return arr.astype(np.int32)
    if arr.dtype == np.float64:
        finite = np.abs(arr[np.isfinite(arr)])
        if finite.size and finite.max() > np.finfo(np.float32).max:
            raise HOperatorError(H_ERR_WFF, f"{path!r}: float64 values outside the float32 range (here "
                                            f"{finite.max():g}) do not fit real (float32) images", op)
        return arr.astype(np.float32)
    return arr


_CONVERT = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
            "RGBX": "RGB", "La": "LA", "RGBa": "RGBA"}
_DTYPES = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16, "I;16S": np.int16,
           "I": np.int32, "F": np.float32}


def _read_pil(path: str) -> np.ndarray:
    with _pil().open(path) as im:
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
    return arr.astype(_DTYPES[mode], copy=False) if mode in _DTYPES else arr


def _read_one(name, op: str) -> np.ndarray:
    if not isinstance(name, (str, os.PathLike)):
        raise HOperatorError(1201, f"file_name must hold strings, got {type(name).__name__} {name!r}", op)
    path = _resolve(os.fspath(name), op)
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
        arr = None
        if magic[:4] in _TIFF_SIGNATURES:
            arr = _read_tiff(path)
        elif magic == _PNG_SIGNATURE:
            arr = _read_png16_color(path)
        if arr is None:
            arr = _read_pil(path)
    except HOperatorError:
        raise
    except Exception as e:  # the decoders raise many types for undecodable files
        raise HOperatorError(H_ERR_WFF, f"{path!r} cannot be read as an image: {e}", op) from None
    if arr.size == 0:
        raise HOperatorError(H_ERR_WFF, f"{path!r}: the image has no pixels (size {arr.shape})", op)
    if arr.ndim not in (2, 3):
        raise HOperatorError(H_ERR_WFF, f"{path!r} decodes to an array of shape {arr.shape}, not to an image", op)
    arr = _narrowed(arr, path, op)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.float32):
        raise HOperatorError(H_ERR_WFF, f"{path!r}: pixel type {arr.dtype} is not supported", op)
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
            comp = {"none": None, "deflate": "adobe_deflate", "lzw": "lzw", "packbits": "packbits", "jpeg": "jpeg"}
            if opts[0] not in comp or len(opts) > 2 or (len(opts) == 2 and opts[0] not in ("deflate", "jpeg")):
                raise bad()
            save["compression"] = comp[opts[0]]
            if len(opts) == 2:  # tifffile's 'level' is the zlib level for deflate, the quality for jpeg
                save["compressionargs"] = {"level": number(opts[1], 0, 100 if opts[0] == "jpeg" else 9)}
            elif opts[0] == "jpeg":
                save["compressionargs"] = {"level": 75}  # as 'jpeg' (Pillow's default), not imagecodecs' own
    elif opts:
        raise bad()
    return kind, save


def _check_image(image, kind: str, save: dict, op: str) -> np.ndarray:
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
    if ok and save.get("compression") == "jpeg" and not (dt == np.uint8 and channels in (1, 3)):
        raise HOperatorError(1301, f"format 'tiff jpeg' cannot store a {channels}-channel {dt} image; it takes "
                                   "byte images with 1 or 3 channels", op)
    if not ok:
        raise HOperatorError(1301, f"format '{kind}' cannot store a {channels}-channel {dt} image", op)
    if kind == "jpeg" or save.get("compression") == "jpeg":
        for size, side in ((arr.shape[1], "wide"), (arr.shape[0], "high")):
            if size > _JPEG_MAX_SIDE:
                name = "jpeg" if kind == "jpeg" else "tiff jpeg"
                raise HOperatorError(1301, f"format '{name}' cannot store an image {size} pixels {side} (max "
                                           f"{_JPEG_MAX_SIDE})", op)
    return np.ascontiguousarray(arr)


def _write_png16_color(arr: np.ndarray, f, level: int | None) -> None:
    import png

    height, width, channels = arr.shape
    writer = png.Writer(width, height, greyscale=channels == 2, alpha=channels in (2, 4), bitdepth=16,
                        compression=level)
    rows = arr.astype(">u2").reshape(height, width * channels)
    writer.write_packed(f, (row.tobytes() for row in rows))  # packed rows: big-endian 16-bit samples


def _write_tiff(arr: np.ndarray, f, save: dict) -> None:
    import tifffile

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    rgb = channels in (3, 4) and arr.dtype in (np.uint8, np.uint16)
    tifffile.imwrite(f, arr, photometric="rgb" if rgb else "minisblack",
                     planarconfig="contig" if channels > 1 else None,
                     extrasamples=("unassalpha",) if rgb and channels == 4 else None,
                     metadata=None, **save)


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
    if "\0" in path:  # a file name of the right type with a wrong value
        raise HOperatorError(1303, f"file_name must not contain a NUL character, got {path!r}", op)
    if not path.lower().endswith(WRITE_EXTENSIONS[kind]):
        path += WRITE_EXTENSIONS[kind][0]
    arr = _check_image(image, kind, save, op)

    def encode(f):
        if kind == "tiff":
            _write_tiff(arr, f, save)
        elif kind == "png" and arr.dtype == np.uint16 and arr.ndim == 3:
            _write_png16_color(arr, f, save.get("level"))
        else:
            options = {"compress_level": save["level"]} if kind == "png" and "level" in save else save
            _pil().fromarray(arr).save(f, format={"jpeg": "JPEG", "png": "PNG", "bmp": "BMP"}[kind], **options)

    _write_atomically(path, encode, op)
