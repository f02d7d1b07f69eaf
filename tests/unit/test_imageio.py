"""Robust reading: every format the lab meets, and every way a file can be bad."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from yawbcc_desktop.core.imageio import ImageReadError, iter_image_paths, read_rgb


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgb_jpeg_png_bmp(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    for ext in ("jpg", "png", "bmp", "tif"):
        out = read_rgb(_save(Image.fromarray(arr), tmp_path / f"a.{ext}"))
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(read_rgb(tmp_path / "a.png"), arr)


def test_16bit_tiff_scaled_to_8bit(tmp_path):
    arr = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    path = _save(Image.fromarray(arr), tmp_path / "deep.tif")
    out = read_rgb(path)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_greyscale_palette_rgba(tmp_path):
    grey = read_rgb(_save(Image.new("L", (5, 4), 77), tmp_path / "g.png"))
    assert grey.shape == (4, 5, 3) and (grey == 77).all()
    pal = read_rgb(
        _save(Image.new("RGB", (5, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE), tmp_path / "p.png")
    )
    assert tuple(pal[0, 0]) == (10, 200, 30)
    rgba = Image.new("RGBA", (5, 4), (255, 0, 0, 0))  # fully transparent red -> white background
    assert tuple(read_rgb(_save(rgba, tmp_path / "t.png"))[0, 0]) == (255, 255, 255)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = _save(img, tmp_path / "o.jpg", exif=exif)
    assert read_rgb(path).shape == (40, 20, 3)


def test_one_pixel_and_non_ascii_name(tmp_path):
    path = _save(Image.new("RGB", (1, 1), (1, 2, 3)), tmp_path / "cellule_éosinophile_血.png")
    assert read_rgb(path).shape == (1, 1, 3)


def _expect(path, words):
    with pytest.raises(ImageReadError) as err:
        read_rgb(path)
    assert str(path) in str(err.value)
    assert any(w in err.value.reason for w in words), err.value.reason


def test_bad_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    _expect(tmp_path / "empty.jpg", ["empty"])
    (tmp_path / "notes.png").write_text("this is not a picture")
    _expect(tmp_path / "notes.png", ["not an image"])
    _save(Image.new("RGB", (200, 200), (9, 9, 9)), tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    _expect(tmp_path / "cut.jpg", ["truncated", "corrupt"])
    _expect(tmp_path / "missing.jpg", ["not found"])
    (tmp_path / "folder.jpg").mkdir()
    _expect(tmp_path / "folder.jpg", ["folder"])


def test_huge_header_is_refused_without_decoding(tmp_path):
    # A valid PNG header that claims 100000 x 100000 pixels.
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    _expect(path, ["limit", "too large"])


def test_unreadable_file(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (4, 4)), tmp_path / "locked.png")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            # Root (as in CI) reads anything: make the OS refuse the open as it would for a user.
            import yawbcc_desktop.core.imageio as imageio

            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(imageio, "open", refuse, raising=False)
        _expect(path, ["permission"])
    finally:
        path.chmod(0o644)


def test_real_non_image_jpg_in_pbc(pbc):
    _expect(pbc / "neutrophil" / ".DS_169665.jpg", ["not an image"])


def test_iter_image_paths(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.JPG").write_bytes(b"1")
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "b.jpg").mkdir()
    (tmp_path / "b.jpg" / "y.png").write_bytes(b"1")
    found = sorted(p.name for p in iter_image_paths([tmp_path]))
    assert found == ["x.JPG", "y.png"]


@pytest.mark.parametrize(("cut", "why"), [(8, "Corrupt EXIF data"), (50, "Truncated File Read")])
def test_corrupt_tiff_header_is_one_clear_reason_not_a_raw_warning(tmp_path, cut, why):
    import warnings

    good = _save(Image.fromarray(np.zeros((40, 50, 3), np.uint8)), tmp_path / "good.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(good.read_bytes()[:cut])  # the tag directory cut short
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        with pytest.raises(ImageReadError) as err:
            read_rgb(bad)
    assert not leaked, [str(w.message) for w in leaked]
    assert err.value.reason.startswith("corrupt or truncated image data (") and why in err.value.reason
    assert str(err.value) == f"{bad}: {err.value.reason}" and "\n" not in str(err.value)


def test_warnings_of_other_code_still_pass_while_an_image_is_read(tmp_path, monkeypatch):
    import warnings

    from yawbcc_desktop.core import imageio

    path = _save(Image.fromarray(np.zeros((8, 8, 3), np.uint8)), tmp_path / "a.png")
    real_open = Image.open

    def noisy_open(fh):
        warnings.warn("not Pillow's", RuntimeWarning, stacklevel=1)
        return real_open(fh)

    monkeypatch.setattr(imageio.Image, "open", noisy_open)
    with pytest.warns(RuntimeWarning, match="not Pillow's"):
        assert read_rgb(path).shape == (8, 8, 3)
