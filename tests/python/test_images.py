"""read_image / write_image: lossless round trips for every format and pixel type HALCON's users store, the
extension rules, several files at once, 16-bit colour PNGs and TIFFs from other writers (and ours read by other
readers), TIFF JPEG compression, and the error codes."""

import inspect
import os

import numpy as np
import pytest

import opendl as ha


def _img(dtype, channels, seed=0, shape=(9, 13)):
    rng = np.random.default_rng(seed)
    full = shape if channels == 1 else shape + (channels,)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 100, full).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, full, dtype=dtype, endpoint=True)


def test_signatures_are_halcons():
    assert list(inspect.signature(ha.read_image).parameters) == ["file_name"]
    assert list(inspect.signature(ha.write_image).parameters) == ["image", "format", "fill_color", "file_name"]


TIFF_TYPES = (np.uint8, np.uint16, np.int16, np.int32, np.float32)
LOSSLESS = [("png", np.uint8, c) for c in (1, 2, 3, 4)] + [("png", np.uint16, c) for c in (1, 2, 3, 4)] + \
    [("bmp", np.uint8, c) for c in (1, 3)] + \
    [("tiff", dt, c) for dt in TIFF_TYPES for c in (1, 2, 3, 4, 5)] + \
    [(f"tiff {comp}", dt, c) for comp in ("none", "deflate", "deflate 9", "lzw", "packbits") for dt in TIFF_TYPES
     for c in (1, 4)] + \
    [("png 9", np.uint8, 3), ("png none", np.uint16, 3), ("png best", np.uint16, 4), ("png fastest", np.uint16, 2)]


@pytest.mark.parametrize("fmt,dtype,channels", LOSSLESS)
def test_lossless_round_trip_keeps_type_channels_and_values(tmp_path, fmt, dtype, channels):
    img = _img(dtype, channels)
    ha.write_image(img, fmt, 0, str(tmp_path / "im"))
    back = ha.read_image(str(tmp_path / "im"))
    assert back.dtype == np.dtype(dtype)
    assert back.shape == img.shape
    np.testing.assert_array_equal(back, img)


def test_one_channel_3d_array_is_written_as_gray(tmp_path):
    img = _img(np.uint8, 1)[:, :, None]
    ha.write_image(img, "png", 0, str(tmp_path / "g.png"))
    back = ha.read_image(str(tmp_path / "g.png"))
    assert back.shape == img.shape[:2]
    np.testing.assert_array_equal(back, img[:, :, 0])


def test_jpeg_quality_and_extension(tmp_path):
    y, x = np.mgrid[0:64, 0:64]
    img = np.stack([x * 4, y * 4, (x + y) * 2], axis=2).astype(np.uint8)
    ha.write_image(img, "jpeg 95", 0, str(tmp_path / "hi"))
    ha.write_image(img, "jpeg 10", 0, str(tmp_path / "lo"))
    assert (tmp_path / "hi.jpg").is_file() and (tmp_path / "lo.jpg").is_file()
    assert os.path.getsize(tmp_path / "lo.jpg") < os.path.getsize(tmp_path / "hi.jpg")
    back = ha.read_image(str(tmp_path / "hi.jpg"))
    assert back.dtype == np.uint8 and back.shape == img.shape
    # a smooth ramp at quality 95 stays within a few grey values on average
    assert np.abs(back.astype(int) - img).mean() < 3


def test_extension_appended_only_when_missing(tmp_path):
    img = _img(np.uint8, 3)
    ha.write_image(img, "tiff", 0, str(tmp_path / "a.tiff"))
    ha.write_image(img, "tiff", 0, str(tmp_path / "b.TIF"))
    ha.write_image(img, "png", 0, str(tmp_path / "c.jpg"))
    assert sorted(os.listdir(tmp_path)) == ["a.tiff", "b.TIF", "c.jpg.png"]


def test_read_tries_known_extensions_and_reads_lists(tmp_path):
    a, b = _img(np.uint8, 1, 1), _img(np.uint8, 3, 2)
    ha.write_image(a, "png", 0, str(tmp_path / "a"))
    ha.write_image(b, "bmp", 0, str(tmp_path / "b"))
    np.testing.assert_array_equal(ha.read_image(str(tmp_path / "a")), a)
    both = ha.read_image([str(tmp_path / "a"), str(tmp_path / "b.bmp")])
    assert isinstance(both, list) and len(both) == 2
    np.testing.assert_array_equal(both[1], b)
    # a one-element list gives the single image
    np.testing.assert_array_equal(ha.read_image([str(tmp_path / "b")]), b)


def test_palette_and_bilevel_images_become_rgb_and_bytes(tmp_path):
    from PIL import Image
    pal = Image.new("P", (4, 3))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "p.png")
    rgb = ha.read_image(str(tmp_path / "p.png"))
    assert rgb.shape == (3, 4, 3)
    assert tuple(rgb[0, 0]) == (10, 20, 30) and tuple(rgb[1, 1]) == (200, 100, 50)
    Image.fromarray(np.array([[0, 1], [1, 0]], bool)).save(tmp_path / "b.png")
    np.testing.assert_array_equal(ha.read_image(str(tmp_path / "b.png")), [[0, 255], [255, 0]])


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_png_from_libpng_and_interlaced_decodes_exactly(tmp_path, channels):
    import imagecodecs
    import png

    img = _img(np.uint16, channels, seed=5, shape=(10, 7))
    (tmp_path / "f.png").write_bytes(imagecodecs.png_encode(img))  # libpng, adaptive row filters
    h, w = img.shape[:2]
    writer = png.Writer(w, h, greyscale=channels == 2, alpha=channels != 3, bitdepth=16, interlace=True)
    with open(tmp_path / "i.png", "wb") as f:
        writer.write(f, img.reshape(h, w * channels).tolist())
    for name in ("f.png", "i.png"):
        back = ha.read_image(str(tmp_path / name))
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(back, img)


def test_written_16bit_colour_png_and_tiffs_are_standard_files(tmp_path):
    import imagecodecs
    from PIL import Image

    img16 = _img(np.uint16, 3, seed=6)
    ha.write_image(img16, "png", 0, str(tmp_path / "c16"))
    np.testing.assert_array_equal(imagecodecs.png_decode((tmp_path / "c16.png").read_bytes()), img16)
    img8 = _img(np.uint8, 4, seed=7)
    for fmt in ("tiff", "tiff deflate", "tiff lzw", "tiff packbits"):
        ha.write_image(img8, fmt, 0, str(tmp_path / "rgba"))
        with Image.open(tmp_path / "rgba.tif") as im:
            assert im.mode == "RGBA"
            np.testing.assert_array_equal(np.asarray(im), img8)


def test_tiff_jpeg_is_lossy_with_quality_and_takes_bytes_only(tmp_path):
    y, x = np.mgrid[0:64, 0:64]
    img = np.stack([x * 4, y * 4, (x + y) * 2], axis=2).astype(np.uint8)
    ha.write_image(img, "tiff jpeg 95", 0, str(tmp_path / "hi"))
    ha.write_image(img, "tiff jpeg 10", 0, str(tmp_path / "lo"))
    ha.write_image(img[:, :, 0], "tiff jpeg", 0, str(tmp_path / "gray"))
    assert os.path.getsize(tmp_path / "lo.tif") < os.path.getsize(tmp_path / "hi.tif")
    back = ha.read_image(str(tmp_path / "hi.tif"))
    assert back.dtype == np.uint8 and back.shape == img.shape
    assert np.abs(back.astype(int) - img).mean() < 3
    gray = ha.read_image(str(tmp_path / "gray.tif"))
    assert gray.shape == img.shape[:2] and np.abs(gray.astype(int) - img[:, :, 0]).mean() < 3
    for bad in (_img(np.uint16, 3), _img(np.uint8, 4), _img(np.float32, 1)):
        with pytest.raises(ha.HOperatorError) as e:
            ha.write_image(bad, "tiff jpeg 90", 0, str(tmp_path / "x"))
        assert _code(e) == 1301 and "tiff jpeg" in str(e.value)


def test_tiffs_from_other_writers(tmp_path):
    import tifffile
    from PIL import Image

    planar = _img(np.int16, 3, seed=8)  # planar (channel-first) storage comes back as (H, W, C)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(planar, -1, 0), photometric="minisblack",
                     planarconfig="separate")
    np.testing.assert_array_equal(ha.read_image(str(tmp_path / "planar.tif")), planar)
    wide = _img(np.uint32, 1, seed=9) >> 1  # uint32 samples become int32
    tifffile.imwrite(tmp_path / "u32.tif", wide)
    back = ha.read_image(str(tmp_path / "u32.tif"))
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, wide)
    rgb = _img(np.uint8, 3, seed=10)
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(ha.read_image(str(tmp_path / "lzw.tif")), rgb)
    pal = Image.new("P", (4, 3))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "pal.tif")
    back = ha.read_image(str(tmp_path / "pal.tif"))
    assert back.shape == (3, 4, 3)
    assert tuple(back[0, 0]) == (10, 20, 30) and tuple(back[1, 1]) == (200, 100, 50)


def _code(excinfo):
    return excinfo.value.error_code


def test_errors(tmp_path):
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_image(str(tmp_path / "nothere"))
    assert _code(e) == 5200 and "nothere" in str(e.value)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is no image")
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_image(str(tmp_path / "bad.png"))
    assert _code(e) == 5238 and "bad.png" in str(e.value)
    img = _img(np.uint8, 3)
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_image(img, "gif", 0, str(tmp_path / "x"))
    assert _code(e) == 1301 and "gif" in str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_image(_img(np.uint16, 1), "jpeg", 0, str(tmp_path / "x"))
    assert _code(e) == 1301 and "uint16" in str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_image(img, "jpeg 101", 0, str(tmp_path / "x"))
    assert _code(e) == 1301
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_image(img, "png", "white", str(tmp_path / "x"))
    assert _code(e) == 1202
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_image([[1, 2]], "png", 0, str(tmp_path / "x"))
    assert _code(e) == 1201
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_image(img, "png", 0, str(tmp_path / "no" / "dir" / "x"))
    assert _code(e) == 3142
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_image([])
    assert _code(e) == 1401


def test_a_failed_write_leaves_the_existing_file_as_it_was(tmp_path, monkeypatch):
    """write_image wrote straight into the destination: a JPEG wider than libjpeg's 65500 pixels failed after
    the file was truncated (0 bytes left), a raw imagecodecs error left a TIFF of 8 bytes. Now the limit is
    checked first (1301), any encoder failure is 3142, and the old file and no temporary file remain."""
    old = _img(np.uint8, 1)
    for fmt, name in (("jpeg", "photo.jpg"), ("tiff jpeg", "photo.tif")):
        path = tmp_path / name
        ha.write_image(old, fmt, 0, str(path))
        before = path.read_bytes()
        for shape, side in (((1, 65501), "65501 pixels wide"), ((70000, 1), "70000 pixels high")):
            with pytest.raises(ha.HOperatorError) as e:
                ha.write_image(np.zeros(shape, np.uint8), fmt, 0, str(path))
            assert (_code(e), e.value.operator_name) == (1301, "write_image")
            assert f"'{fmt}'" in str(e.value) and side in str(e.value) and "65500" in str(e.value)
            assert path.read_bytes() == before
    ha.write_image(np.zeros((1, 65500), np.uint8), "jpeg", 0, str(tmp_path / "edge"))  # the limit itself is fine

    import imagecodecs

    def broken(arr, f, save):  # an encoder failing halfway, as imagecodecs' JPEG encoder did
        f.write(b"II*\0partial")
        raise imagecodecs.Jpeg8Error("encoder failed")

    monkeypatch.setattr("opendl.images._write_tiff", broken)
    before = (tmp_path / "photo.tif").read_bytes()
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_image(old, "tiff", 0, str(tmp_path / "photo.tif"))
    assert (_code(e), e.value.operator_name) == (3142, "write_image") and "encoder failed" in str(e.value)
    assert (tmp_path / "photo.tif").read_bytes() == before
    (tmp_path / "dir.png").mkdir()  # the rename fails: 3142, the temporary file is removed
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_image(old, "png", 0, str(tmp_path / "dir.png"))
    assert _code(e) == 3142
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "edge.jpg", "photo.jpg", "photo.tif"]
    with pytest.raises(ha.HOperatorError) as e:  # a raw ValueError before
        ha.write_image(old, "png", 0, str(tmp_path / "photo.tif") + "\0.png")
    assert (_code(e), e.value.operator_name) == (1303, "write_image") and "NUL" in str(e.value)
    assert (tmp_path / "photo.tif").read_bytes() == before


def test_written_files_get_the_usual_permissions(tmp_path):
    # the temporary file is renamed into place: it must not keep mkstemp's 0600
    umask = os.umask(0o022)
    try:
        ha.write_image(_img(np.uint8, 1), "png", 0, str(tmp_path / "x"))
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "x.png").st_mode & 0o777 == 0o644


@pytest.mark.filterwarnings("ignore:.*zero-size array")  # tifffile warns when writing the 0 x 5 TIFF
def test_tiff_values_without_an_image_type_and_images_without_pixels_are_refused(tmp_path):
    """uint32 values above 2^31-1 were wrapped to negative int32, float64 values beyond float32 became +-inf,
    and a 0 x 5 TIFF came back as a 1-D array; values that fit still convert exactly."""
    import tifffile

    for name, data, words in (("u32", np.array([[3_000_000_000, 1]], np.uint32), "uint32"),
                              ("f64", np.array([[1e300, -1.0]], np.float64), "float32 range"),
                              ("empty", np.zeros((0, 5), np.uint8), "no pixels")):
        tifffile.imwrite(tmp_path / f"{name}.tif", data)
        with pytest.raises(ha.HOperatorError) as e:
            ha.read_image(str(tmp_path / f"{name}.tif"))
        assert (_code(e), e.value.operator_name) == (5238, "read_image")
        assert words in str(e.value) and f"{name}.tif" in str(e.value)
    fits = np.array([[2**31 - 1, 0]], np.uint32)
    tifffile.imwrite(tmp_path / "fits.tif", fits)
    back = ha.read_image(str(tmp_path / "fits.tif"))
    assert back.dtype == np.int32 and back.tolist() == [[2**31 - 1, 0]]
    tifffile.imwrite(tmp_path / "f64ok.tif", np.array([[np.inf, -3.4e38, np.nan]], np.float64))
    back = ha.read_image(str(tmp_path / "f64ok.tif"))  # infinities and NaN are values float32 holds
    assert back.dtype == np.float32 and np.isposinf(back[0, 0]) and back[0, 1] == np.float32(-3.4e38)
