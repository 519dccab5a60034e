"""A corpus of messy but real inputs, built at test time from photographs that ship inside installed packages.

:func:`build_messy_corpus` writes, under ``root``, image folders and tables of the kinds users actually have:
photos of every size, aspect ratio, colour mode and format, EXIF-rotated JPEGs, stray files, symbolic links, and
tables with byte-order marks, semicolons, other encodings, broken lines and label spellings that differ. The
photographs are crops of ``china.jpg`` and ``flower.jpg`` (scikit-learn's ``load_sample_images`` folder) and
``grace_hopper.jpg`` (matplotlib's ``sample_data``; that class is left out when matplotlib is not installed). Nothing
is copied into the repository; everything is written fresh into ``root`` (a few hundred kilobytes, every image at
most 256 px on its longer side except the deliberate strips).

Each class of the image folders holds crops of one photograph, so a model can tell them apart.

What each key holds and what every verb should do with it (:data:`EXPECTED` says the same for code):

Should succeed (perhaps with the warnings named):

- ``images``: three class folders (``china``, ``flower``, ``hopper``), 14 images each: JPEG and PNG crops of
  varied sizes and aspect ratios, thumbnails of 32 px or less, JPEGs stored sideways with EXIF orientation 6 and 8,
  a CMYK JPEG, a 16-bit greyscale PNG, a palette PNG with a transparent colour, RGBA, LA, 1-bit and greyscale
  images, a 32-bit float TIFF, ``.webp``, ``.bmp``, ``.JPG``, ``.jpeg``, an animated GIF (its first frame is used), a
  multi-page TIFF (its first page), a PNG saved under a ``.jpg`` name. Stray files: ``README.txt`` in ``china``
  (one warning that a file without an image extension was skipped), ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, an
  AppleDouble ``._`` file (all skipped silently), and ``__MACOSX`` and ``.thumbnails`` folders beside the classes
  (not classes; skipped silently).
- ``images_with_links``: the ``images`` folder plus symbolic links in the class folders: ``flower/again.jpg`` to
  another image of the same class (kept, it is an image of that class), ``china/up`` to the parent folder and
  ``hopper/loop`` to itself, and ``flower/gone.jpg`` to a file that does not exist. Each of the last three is
  skipped with one warning naming it; every image keeps the label of its own class folder. Only on systems
  with symbolic links.
- ``images_odd_shapes``: two classes with 1x1 and 2x2 images, 1000x10 and 10x1000 strips and ordinary crops.
- ``images_undecodable_names``: two classes, some file names not valid UTF-8 (Linux only; elsewhere the names
  are ordinary). Every verb works; the names are shown with escapes.
- ``images_conflicting_duplicate``: like ``images`` but one photo of ``china`` also lies, byte for byte, in
  ``flower``: works with one warning naming both files (same content, different labels).
- ``image_table``: a CSV ``path,label`` of relative paths into ``images`` (works; the table's folder is the base).
- ``text_clean``: a plain UTF-8 CSV ``text,label``, two classes of 12 reviews.
- ``text_csv_bom``: the same rows, UTF-8 with a byte-order mark, headers written ``" text "`` and ``" label "``.
- ``text_semicolon``: ``;``-delimited, texts containing commas (the delimiter is sniffed).
- ``text_excel_sep``: ``;``-delimited with Excel's ``sep=;`` first line.
- ``text_tsv``: tab-separated ``.tsv``.
- ``text_crlf_quoted``: Windows line endings, texts with quoted line breaks, blank lines and a fully empty row
  (blank rows are skipped; rows are named by the line they start on).
- ``text_jsonl``: JSON lines.
- ``text_parquet``: Parquet (when pyarrow is installed).
- ``text_utf16``: UTF-16 tab-separated text with a byte-order mark, as spreadsheet programs save "Unicode text".
- ``text_latin1``: latin-1 bytes (``é``, ``ü``): works with ``encoding="latin-1"`` / ``--encoding latin-1``;
  without it, see below.
- ``text_label_variants``: labels ``positive`` / ``Positive`` / ``POSITIVE `` and ``negative``: works only with
  ``normalize_labels=True`` / ``--normalize-labels`` (two classes, spelled as their most frequent spelling).
- ``text_conflicting_duplicates``: the same text under two labels: works with one warning naming both lines.

Should fail with a :class:`~transferkit.errors.DataError` before any model runs (CLI: ``error: ...``, exit 2):

- ``text_latin1`` without the encoding: names line 2 and the column of the first bad byte and suggests
  ``--encoding latin-1``.
- ``text_label_variants`` without the option: names both spellings, a line of each, and ``--normalize-labels``.
- ``text_jsonl_broken``: line 4 is not JSON: the message names line 4 and shows its start.
- ``text_float_labels`` (CSV) and ``text_float_labels_parquet``: 30 distinct decimal labels: "looks numeric (a
  regression target?)".
- ``images_broken``: a zero-byte ``.jpg``, a truncated JPEG and a text file named ``.png`` beside good images: one
  error listing the three files.
- ``text_nul``: a CSV with NUL bytes inside a line: names the line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

#: key -> (outcome, what to check). Outcomes: "ok" (works, no warning), "warn" (works with the warnings named),
#: "ok-with-option" (fails without the option named, works with it), "error" (DataError naming what is said).
EXPECTED: dict[str, tuple[str, str]] = {
    "images": ("warn", "README.txt skipped (no image extension)"),
    "images_with_links": ("warn", "china/up, hopper/loop, flower/gone.jpg skipped, each named"),
    "images_odd_shapes": ("ok", ""),
    "images_undecodable_names": ("ok", ""),
    "images_conflicting_duplicate": ("warn", "identical content, different labels: both files named"),
    "image_table": ("ok", ""),
    "text_clean": ("ok", ""),
    "text_csv_bom": ("ok", ""),
    "text_semicolon": ("ok", ""),
    "text_excel_sep": ("ok", ""),
    "text_tsv": ("ok", ""),
    "text_crlf_quoted": ("ok", ""),
    "text_jsonl": ("ok", ""),
    "text_parquet": ("ok", ""),
    "text_utf16": ("ok", ""),
    "text_latin1": ("ok-with-option", "encoding='latin-1' / --encoding latin-1; without: line 2, column, --encoding"),
    "text_label_variants": ("ok-with-option", "normalize_labels=True / --normalize-labels; without: both spellings"),
    "text_conflicting_duplicates": ("warn", "same text, different labels: both lines named"),
    "text_jsonl_broken": ("error", "line 4"),
    "text_float_labels": ("error", "looks numeric"),
    "text_float_labels_parquet": ("error", "looks numeric"),
    "images_broken": ("error", "empty.jpg, cut.jpg, notes.png"),
    "text_nul": ("error", "NUL"),
}

MAX_SIDE = 256


def _photos() -> dict[str, "object"]:
    """The source photographs as RGB PIL images, by class name (real photos from installed packages)."""
    from PIL import Image
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "images"
    photos = {name: Image.open(folder / f"{name}.jpg").convert("RGB") for name in ("china", "flower")}
    try:
        import matplotlib

        hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if hopper.is_file():
            photos["hopper"] = Image.open(hopper).convert("RGB")
    except ImportError:
        pass
    return photos


def _crop(photo, rng: np.random.Generator, width: int, height: int):
    """A random crop of ``photo`` with the aspect ratio ``width:height``, resized to ``width x height``."""
    from PIL import Image

    pw, ph = photo.size
    scale = rng.uniform(0.35, 0.9)
    cw = ch = 0
    if width / height >= pw / ph:
        cw = int(pw * scale)
        ch = max(1, int(cw * height / width))
    else:
        ch = int(ph * scale)
        cw = max(1, int(ch * width / height))
    left = int(rng.integers(0, max(1, pw - cw)))
    top = int(rng.integers(0, max(1, ph - ch)))
    return photo.crop((left, top, left + cw, top + ch)).resize((width, height), Image.Resampling.LANCZOS)


def _exif_rotated(upright, orientation: int, path: Path) -> None:
    """Save ``upright`` as a JPEG whose pixels are stored turned, with the EXIF tag that turns them back."""
    from PIL import Image

    # exif_transpose applies ROTATE_270 for orientation 6 and ROTATE_90 for 8: store the inverse turn
    stored = upright.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, "JPEG", quality=90, exif=exif.tobytes())


def _write_class(folder: Path, photo, rng: np.random.Generator, extras: list[str]) -> None:
    """About a dozen images of one class: the formats every class has, plus ``extras``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    _crop(photo, rng, 256, 170).save(folder / "landscape.jpg", quality=90)
    _crop(photo, rng, 96, 200).save(folder / "portrait.png")
    _crop(photo, rng, 24, 24).save(folder / "thumb24.jpg", quality=90)
    _crop(photo, rng, 16, 30).save(folder / "thumb16x30.png")
    _exif_rotated(_crop(photo, rng, 160, 100), 6, folder / "exif6.jpg")
    _crop(photo, rng, 120, 150).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    grey16 = np.asarray(_crop(photo, rng, 128, 96).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey16).save(folder / "grey16.png")
    _crop(photo, rng, 100, 100).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(
        folder / "palette_transparent.png", transparency=0)
    rgba = _crop(photo, rng, 140, 90).convert("RGBA")
    alpha = np.tile(np.linspace(40, 255, rgba.width, dtype=np.uint8), (rgba.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(folder / "alpha.png")
    _crop(photo, rng, 64, 48).save(folder / "small.webp", quality=90)
    for extra in extras:
        _write_extra(folder, photo, rng, extra)


def _write_extra(folder: Path, photo, rng: np.random.Generator, extra: str) -> None:
    from PIL import Image

    if extra == "bmp":
        _crop(photo, rng, 80, 60).save(folder / "bitmap.bmp")
    elif extra == "upper":
        _crop(photo, rng, 90, 120).save(folder / "CAMERA.JPG", quality=90)
    elif extra == "jpeg":
        _crop(photo, rng, 200, 150).save(folder / "photo.jpeg", quality=90)
    elif extra == "exif8":
        _exif_rotated(_crop(photo, rng, 90, 140), 8, folder / "exif8.jpg")
    elif extra == "la":
        _crop(photo, rng, 70, 70).convert("LA").save(folder / "grey_alpha.png")
    elif extra == "bilevel":
        _crop(photo, rng, 64, 64).convert("1").save(folder / "bilevel.png")
    elif extra == "grey":
        _crop(photo, rng, 110, 80).convert("L").save(folder / "grey.jpg", quality=90)
    elif extra == "float_tiff":
        grey = np.asarray(_crop(photo, rng, 72, 72).convert("L"), dtype=np.float32) / 255.0
        Image.fromarray(grey, mode="F").save(folder / "float.tif")
    elif extra == "gif":
        frames = [_crop(photo, rng, 60, 60).convert("P", palette=Image.Palette.ADAPTIVE) for _ in range(3)]
        frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    elif extra == "multipage":
        pages = [_crop(photo, rng, 50, 80) for _ in range(2)]
        pages[0].save(folder / "pages.tiff", save_all=True, append_images=pages[1:])
    elif extra == "png_named_jpg":
        _crop(photo, rng, 75, 75).save(folder / "really_a_png.jpg", format="PNG")
    elif extra == "tiny":
        _crop(photo, rng, 8, 8).save(folder / "tiny8.png")
    else:  # pragma: no cover - a typo in this file
        raise ValueError(extra)


_EXTRAS = {
    "china": ["bmp", "upper", "exif8", "float_tiff"],
    "flower": ["jpeg", "la", "gif", "png_named_jpg"],
    "hopper": ["bilevel", "grey", "multipage", "tiny"],
}


def _write_images(root: Path, photos: dict, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, photo in photos.items():
        _write_class(root / name, photo, rng, _EXTRAS[name])
    (root / "china" / "README.txt").write_text("Photos of the Summer Palace, cropped.\n", encoding="utf-8")
    (root / "flower" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
    (root / "hopper" / "Thumbs.db").write_bytes(bytes(64))
    (root / "hopper" / "desktop.ini").write_text("[.ShellClassInfo]\r\n", encoding="utf-8")
    (root / "china" / "._landscape.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (root / "__MACOSX" / "china").mkdir(parents=True)
    (root / "__MACOSX" / "china" / "._landscape.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (root / ".thumbnails").mkdir()
    (root / ".thumbnails" / "x.png").write_bytes(bytes(10))
    return root


REVIEWS = {
    "positive": ["A wonderful, moving film.", "Great acting, and a great story.", "I loved every minute of it.",
                 "Brilliant and funny, from the first scene.", "A delight from start to finish.",
                 "Superb, heartfelt work by the whole cast.", "Charming, clever and kind.",
                 "One of the best films this year.", "Beautifully shot; I would watch it again.",
                 "Warm, witty and surprising.", "The music alone is worth the ticket.",
                 "A small masterpiece, full of life."],
    "negative": ["A dull, lifeless mess.", "Terrible acting, and a boring plot.", "I hated every minute of it.",
                 "Tedious and unfunny, from the first scene.", "A chore from start to finish.",
                 "Awful, cynical work by the whole cast.", "Clumsy, stupid and loud.",
                 "One of the worst films this year.", "Badly shot; I walked out.", "Cold, witless and predictable.",
                 "The music alone made me leave.", "A big failure, empty of life."],
}


def _rows() -> list[tuple[str, str]]:
    rows = []
    for pos, neg in zip(REVIEWS["positive"], REVIEWS["negative"]):
        rows += [(pos, "positive"), (neg, "negative")]
    return rows


def _csv_text(rows, header=("text", "label"), delimiter: str = ",", lineterminator: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=lineterminator)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write_tables(root: Path, images: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    rows = _rows()
    out: dict[str, Path] = {}

    out["text_clean"] = root / "reviews.csv"
    out["text_clean"].write_text(_csv_text(rows), encoding="utf-8")

    out["text_csv_bom"] = root / "reviews_bom.csv"
    out["text_csv_bom"].write_bytes(_csv_text(rows, header=(" text ", " label ")).encode("utf-8-sig"))

    out["text_semicolon"] = root / "reviews_semicolon.csv"
    out["text_semicolon"].write_text(_csv_text(rows, delimiter=";"), encoding="utf-8")

    out["text_excel_sep"] = root / "reviews_excel.csv"
    out["text_excel_sep"].write_text("sep=;\n" + _csv_text(rows, delimiter=";"), encoding="utf-8")

    out["text_tsv"] = root / "reviews.tsv"
    out["text_tsv"].write_text(_csv_text(rows, delimiter="\t"), encoding="utf-8")

    crlf_rows = [(text.replace(", ", ",\r\n") if i % 5 == 0 else text, label) for i, (text, label) in enumerate(rows)]
    body = _csv_text(crlf_rows, lineterminator="\r\n")
    lines = body.split("\r\n")
    lines.insert(4, "")  # a blank line
    lines.insert(9, ",")  # a row with every cell empty (spreadsheets write these)
    out["text_crlf_quoted"] = root / "reviews_windows.csv"
    out["text_crlf_quoted"].write_bytes("\r\n".join(lines).encode("utf-8"))

    out["text_jsonl"] = root / "reviews.jsonl"
    out["text_jsonl"].write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows),
                                 encoding="utf-8")

    try:
        import pandas as pd
        import pyarrow  # noqa: F401

        out["text_parquet"] = root / "reviews.parquet"
        pd.DataFrame(rows, columns=["text", "label"]).to_parquet(out["text_parquet"])
        floats = pd.DataFrame({"text": [f"{t} ({i})" for i, (t, _) in enumerate(rows + rows[:6])],
                               "label": np.round(np.linspace(0.1, 9.9, 30), 2)})
        out["text_float_labels_parquet"] = root / "scores.parquet"
        floats.to_parquet(out["text_float_labels_parquet"])
    except ImportError:
        pass

    out["text_utf16"] = root / "reviews_unicode.txt"
    out["text_utf16"].write_bytes(_csv_text(rows, delimiter="\t", lineterminator="\r\n").encode("utf-16"))

    accented = [(t.replace("a", "é", 1).replace("u", "ü", 1), lab) for t, lab in rows]
    out["text_latin1"] = root / "reviews_latin1.csv"
    out["text_latin1"].write_bytes(_csv_text(accented).encode("latin-1"))

    spellings = ["positive", "Positive", "positive", "POSITIVE ", "positive", "positive"]
    variant_rows = [(t, spellings[(i // 2) % len(spellings)] if lab == "positive" else lab)
                    for i, (t, lab) in enumerate(rows)]
    out["text_label_variants"] = root / "reviews_label_spellings.csv"
    out["text_label_variants"].write_text(_csv_text(variant_rows), encoding="utf-8")

    conflict = rows + [(rows[0][0], "negative")]
    out["text_conflicting_duplicates"] = root / "reviews_conflict.csv"
    out["text_conflicting_duplicates"].write_text(_csv_text(conflict), encoding="utf-8")

    jsonl = [json.dumps({"text": t, "label": lab}) for t, lab in rows]
    jsonl[3] = '{"text": "A broken record, "label": "positive"}'
    out["text_jsonl_broken"] = root / "reviews_broken.jsonl"
    out["text_jsonl_broken"].write_text("\n".join(jsonl) + "\n", encoding="utf-8")

    float_rows = [(f"{t} ({i})", f"{v:.2f}") for i, ((t, _), v) in
                  enumerate(zip(rows + rows[:6], np.linspace(0.1, 9.9, 30)))]
    out["text_float_labels"] = root / "scores.csv"
    out["text_float_labels"].write_text(_csv_text(float_rows), encoding="utf-8")

    nul = _csv_text(rows).split("\n")
    nul[5] = nul[5][:6] + "\x00\x00" + nul[5][6:]
    out["text_nul"] = root / "reviews_nul.csv"
    out["text_nul"].write_bytes("\n".join(nul).encode("utf-8"))

    table_rows = [(os.path.relpath(p, root).replace(os.sep, "/"), p.parent.name)
                  for p in sorted(images.rglob("*")) if p.parent.parent == images and p.suffix.lower() in
                  {".jpg", ".jpeg", ".png", ".webp", ".bmp"} and not p.name.startswith(".")
                  and not p.parent.name.startswith((".", "__"))]
    out["image_table"] = root / "images.csv"
    out["image_table"].write_text(_csv_text(table_rows, header=("path", "label")), encoding="utf-8")
    return out


def _symlinks_supported(folder: Path) -> bool:
    try:
        os.symlink("nowhere", folder / ".probe")
    except (OSError, NotImplementedError):
        return False
    os.unlink(folder / ".probe")
    return True


def build_messy_corpus(root: Path) -> dict[str, Path]:
    """Write the corpus under ``root`` (which may not exist yet) and return its parts by key (see the module
    docstring for what each holds and whether it should load). Deterministic: the same files on every call."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    photos = _photos()
    out: dict[str, Path] = {}

    out["images"] = _write_images(root / "images", photos)

    links = root / "images_with_links"
    shutil.copytree(out["images"], links, symlinks=True)
    if _symlinks_supported(links):
        os.symlink("landscape.jpg", links / "flower" / "again.jpg")
        os.symlink("..", links / "china" / "up", target_is_directory=True)
        os.symlink("loop", links / "hopper" / "loop")
        os.symlink("no_such_file.jpg", links / "flower" / "gone.jpg")
    out["images_with_links"] = links

    rng = np.random.default_rng(1)
    odd = root / "images_odd_shapes"
    for name in ("china", "flower"):
        folder = odd / name
        folder.mkdir(parents=True)
        photo = photos[name]
        _crop(photo, rng, 1, 1).save(folder / "one_pixel.png")
        _crop(photo, rng, 2, 2).save(folder / "two_pixels.png")
        _crop(photo, rng, 1000, 10).save(folder / "strip_wide.png")
        _crop(photo, rng, 10, 1000).save(folder / "strip_tall.png")
        for i in range(4):
            _crop(photo, rng, 120, 90).save(folder / f"crop{i}.jpg", quality=90)
    out["images_odd_shapes"] = odd

    names = root / "images_undecodable_names"
    for name in ("china", "flower"):
        folder = names / name
        folder.mkdir(parents=True)
        for i in range(5):
            image = _crop(photos[name], rng, 96, 72)
            if sys.platform.startswith("linux") and i < 2:
                raw = os.fsencode(folder) + b"/caf\xe9_" + str(i).encode() + b".jpg"  # latin-1 bytes in a name
                with open(raw, "wb") as handle:
                    image.save(handle, "JPEG", quality=90)
            else:
                image.save(folder / f"photo_{i}.jpg", quality=90)
    out["images_undecodable_names"] = names

    conflict = root / "images_conflicting_duplicate"
    shutil.copytree(out["images"], conflict)
    shutil.copyfile(conflict / "china" / "landscape.jpg", conflict / "flower" / "from_china.jpg")
    out["images_conflicting_duplicate"] = conflict

    broken = root / "images_broken"
    for name in ("china", "flower"):
        folder = broken / name
        folder.mkdir(parents=True)
        for i in range(3):
            _crop(photos[name], rng, 64, 64).save(folder / f"ok{i}.jpg", quality=90)
    (broken / "china" / "empty.jpg").write_bytes(b"")
    data = (broken / "china" / "ok0.jpg").read_bytes()
    (broken / "flower" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (broken / "flower" / "notes.png").write_text("not an image\n", encoding="utf-8")
    out["images_broken"] = broken

    out.update(_write_tables(root / "tables", out["images"]))
    # the image table's paths are relative to its own folder
    return out
