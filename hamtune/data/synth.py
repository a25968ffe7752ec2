"""A synthetic HAM10000 in the Kaggle layout: the default dataset for smoke sweeps and tests.

The real images are CC BY-NC and large, so hamtune ships none. This module writes a stand-in
with the real file layout, metadata columns, value sets and class imbalance (from embedded
tables summarising the real metadata; nothing is read at run time), whose images carry a
class-dependent signal (colour, size, border, texture, a typical accent) with overlap between
classes, so a small CNN learns it and class weighting visibly matters for the rare classes.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from PIL import Image, ImageChops

from hamtune.errors import ConfigError
from hamtune.labels import NUM_CLASSES

log = logging.getLogger(__name__)

METADATA_COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
PARTS: tuple[str, str] = ("HAM10000_images_part_1", "HAM10000_images_part_2")
#: Every class gets at least this many lesions: a class with >= 20 lesions reaches every split
#: of `hamtune.data.split.split_dataset` (20 folds), whatever the seed.
MIN_LESIONS_PER_CLASS: int = 20
MIN_IMAGES: int = NUM_CLASSES * MIN_LESIONS_PER_CLASS
MIN_SIDE: int = 32
JPEG_QUALITY: int = 90
#: Views are drawn with their short side at most this long, then upsampled with Pillow: the
#: images are smooth (as real dermoscopy downsampled to 600×450 is) and this keeps 600×450 cheap.
RENDER_SIDE: int = 256
FIRST_IMAGE_NUMBER: int = 24306  # ISIC_0024306, as in the real set
PART_1_SHARE: float = 5000 / 10015  # the real part_1 holds the first 5,000 of 10,015 ids

# --- Summary of the real metadata (10,015 images, 7,470 lesions) ---------------------------
#: Lesions of each class with 1, 2, ..., 6 images (gives both image and lesion counts).
VIEWS_PER_LESION: dict[str, tuple[int, ...]] = {
    "akiec": (151, 57, 18, 2, 0, 0),
    "bcc": (175, 118, 33, 1, 0, 0),
    "bkl": (440, 220, 55, 8, 2, 2),
    "df": (39, 26, 8, 0, 0, 0),
    "mel": (230, 278, 100, 4, 1, 1),
    "nv": (4415, 699, 268, 18, 2, 1),
    "vasc": (64, 25, 8, 1, 0, 0),
}
DX_TYPES: tuple[str, ...] = ("histo", "follow_up", "consensus", "confocal")
DX_TYPE_IMAGES: dict[str, tuple[int, ...]] = {
    "akiec": (327, 0, 0, 0),
    "bcc": (514, 0, 0, 0),
    "bkl": (766, 0, 264, 69),
    "df": (55, 0, 60, 0),
    "mel": (1113, 0, 0, 0),
    "nv": (2498, 3704, 503, 0),
    "vasc": (67, 0, 75, 0),
}
SEXES: tuple[str, ...] = ("female", "male", "unknown")  # "unknown" sex comes with a missing age
SEX_IMAGES: dict[str, tuple[int, ...]] = {
    "akiec": (106, 221, 0),
    "bcc": (197, 317, 0),
    "bkl": (463, 626, 10),
    "df": (52, 63, 0),
    "mel": (424, 689, 0),
    "nv": (3237, 3421, 47),
    "vasc": (73, 69, 0),
}
#: Mean and standard deviation of age; ages are multiples of 5 in [0, 85].
AGE_MEAN_SD: dict[str, tuple[float, float]] = {
    "akiec": (66.5, 11.5),
    "bcc": (66.8, 13.7),
    "bkl": (64.3, 14.1),
    "df": (53.0, 13.6),
    "mel": (60.7, 15.2),
    "nv": (46.5, 15.2),
    "vasc": (51.4, 21.6),
}
LOCALIZATIONS: tuple[str, ...] = (
    "abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand",
    "lower extremity", "neck", "scalp", "trunk", "unknown", "upper extremity",
)  # fmt: skip
LOCALIZATION_IMAGES: dict[str, tuple[int, ...]] = {
    "akiec": (5, 0, 29, 12, 3, 113, 0, 0, 13, 65, 10, 14, 1, 0, 62),
    "bcc": (18, 0, 186, 47, 0, 101, 4, 0, 2, 58, 14, 19, 11, 5, 49),
    "bkl": (42, 0, 202, 74, 6, 319, 1, 2, 14, 174, 31, 34, 73, 23, 104),
    "df": (4, 0, 2, 0, 0, 0, 2, 1, 0, 82, 0, 0, 0, 0, 24),
    "mel": (66, 0, 324, 68, 17, 104, 28, 0, 1, 192, 29, 14, 47, 10, 213),
    "nv": (860, 7, 1427, 200, 30, 100, 284, 45, 55, 1479, 81, 45, 1241, 196, 655),
    "vasc": (27, 0, 22, 6, 0, 8, 0, 0, 5, 27, 3, 2, 31, 0, 11),
}


@dataclass(frozen=True)
class _Look:
    """What a class tends to look like; each lesion draws its own values around these."""

    colour: tuple[float, float, float]  # body colour, RGB in [0, 1]
    radius: float  # as a fraction of half the image's short side
    irregularity: float  # amplitude of the border's wobble
    mottling: float  # amplitude of the body's texture
    grain: float  # texture cells across the canvas: larger is finer
    accent: str  # "centre" (scar-like patch), "veil" (blotch), "dots" (globules), "vessels" (lines)
    accent_colour: tuple[float, float, float]
    accent_chance: float


LOOKS: dict[str, _Look] = {
    "akiec": _Look((0.78, 0.45, 0.42), 0.55, 0.10, 0.25, 24, "veil", (0.92, 0.85, 0.72), 0.6),
    "bcc": _Look((0.82, 0.62, 0.62), 0.50, 0.06, 0.10, 8, "vessels", (0.70, 0.15, 0.20), 0.8),
    "bkl": _Look((0.66, 0.50, 0.36), 0.60, 0.08, 0.22, 16, "dots", (0.45, 0.32, 0.22), 0.5),
    "df": _Look((0.62, 0.45, 0.36), 0.40, 0.03, 0.08, 8, "centre", (0.90, 0.86, 0.80), 0.9),
    "mel": _Look((0.30, 0.19, 0.14), 0.66, 0.16, 0.30, 10, "veil", (0.40, 0.45, 0.58), 0.6),
    "nv": _Look((0.50, 0.33, 0.22), 0.50, 0.04, 0.12, 10, "dots", (0.35, 0.22, 0.15), 0.3),
    "vasc": _Look((0.62, 0.16, 0.26), 0.42, 0.04, 0.15, 6, "dots", (0.40, 0.08, 0.18), 0.7),
}


def synthetic_name(images: int, seed: int, size: tuple[int, int]) -> str:
    """The cache folder name of one synthetic dataset: `synthetic-{images}-{seed}-{w}x{h}`."""
    return f"synthetic-{images}-{seed}-{size[0]}x{size[1]}"


def write_synthetic(out_dir: Path, images: int = 1000, seed: int = 0, size: tuple[int, int] = (600, 450)) -> Path:
    """Write a synthetic HAM10000 (`images` JPEGs of `size` = (width, height)) into `out_dir`.

    Same arguments, same bytes. The set is built in a hidden sibling folder and renamed into
    place, so `out_dir` either does not exist or is complete. `images` must be at least
    `MIN_IMAGES` (140), so each class gets `MIN_LESIONS_PER_CLASS` lesions; above that the class
    and views-per-lesion mix follows the real set. An existing non-empty `out_dir` is refused.
    """
    size = _checked(images, seed, size)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} already exists and is not an empty folder; choose a new one or remove it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        metadata = synthetic_metadata(images, seed)
        _write_images(partial, metadata, seed, size)
        metadata.to_csv(partial / "HAM10000_metadata.csv", index=False)
        os.replace(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def ensure_synthetic(root: Path, images: int, seed: int, size: tuple[int, int]) -> Path:
    """`root/synthetic-{images}-{seed}-{w}x{h}`, generated on first use and reused afterwards.

    A file lock makes concurrent callers (trials, nodes sharing a folder) generate it once:
    the others wait, then reuse it. Leftovers of an interrupted generation are removed.
    """
    size = _checked(images, seed, size)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / synthetic_name(images, seed, size)
    with FileLock(str(root / f".{target.name}.lock")):
        if target.is_dir():
            log.info("reusing synthetic dataset %s", target)
            return target
        for leftover in root.glob(f".{target.name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        log.info("generating synthetic dataset %s (%d images, seed %d, %dx%d)", target, images, seed, *size)
        return write_synthetic(target, images, seed, size)


def synthetic_metadata(images: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The metadata table of a synthetic set: `METADATA_COLUMNS`, views of a lesion adjacent."""
    _checked(images, seed, (MIN_SIDE, MIN_SIDE))
    rng = np.random.default_rng(seed)
    sizes = {dx: _lesion_sizes(rng, dx, n) for dx, n in _images_per_class(images).items()}
    n_lesions = sum(len(s) for s in sizes.values())
    lesion_numbers = rng.choice(max(n_lesions, round(n_lesions * 7629 / 7470)), n_lesions, replace=False)
    image_numbers = FIRST_IMAGE_NUMBER + rng.permutation(images)
    rows, next_lesion, next_image = [], 0, 0
    for dx, lesion_sizes in sizes.items():
        for views in lesion_sizes:
            fields = _lesion_fields(rng, dx)
            lesion_id = f"HAM_{lesion_numbers[next_lesion]:07d}"
            for number in image_numbers[next_image : next_image + views]:
                rows.append({"lesion_id": lesion_id, "image_id": f"ISIC_{number:07d}", "dx": dx, **fields})
            next_lesion, next_image = next_lesion + 1, next_image + views
    return pd.DataFrame(rows, columns=list(METADATA_COLUMNS))


def _checked(images: int, seed: int, size: tuple[int, int]) -> tuple[int, int]:
    """Validate the generator's arguments; return `size` as a tuple of ints."""
    if isinstance(images, bool) or not isinstance(images, Integral) or images < MIN_IMAGES:
        raise ConfigError(
            f"`images` must be an integer >= {MIN_IMAGES} ({MIN_LESIONS_PER_CLASS} lesions for each of "
            f"{NUM_CLASSES} classes), got {images!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigError(f"`seed` must be an integer >= 0, got {seed!r}")
    if (
        len(tuple(size)) != 2
        or any(isinstance(side, bool) or not isinstance(side, Integral) for side in size)
        or min(size) < MIN_SIDE
    ):
        raise ConfigError(f"`size` must be (width, height), integers >= {MIN_SIDE}, got {size!r}")
    return int(size[0]), int(size[1])


def _images_per_class(images: int) -> dict[str, int]:
    """Images per class at the real shares, each minority class raised to its lesion minimum."""
    real = {dx: np.dot(views, np.arange(1, 7)) for dx, views in VIEWS_PER_LESION.items()}
    largest = max(real, key=real.get)
    counts = {dx: max(MIN_LESIONS_PER_CLASS, round(images * n / sum(real.values()))) for dx, n in real.items()}
    counts[largest] = images - sum(n for dx, n in counts.items() if dx != largest)
    return counts


def _lesion_sizes(rng: np.random.Generator, dx: str, images: int) -> np.ndarray:
    """Views per lesion for `images` images of class `dx`, following the real views-per-lesion mix."""
    views = np.asarray(VIEWS_PER_LESION[dx], dtype=float)
    lesions = min(images, max(MIN_LESIONS_PER_CLASS, round(images * views.sum() / np.dot(views, np.arange(1, 7)))))
    sizes = rng.choice(np.arange(1, 7), size=lesions, p=views / views.sum())
    surplus = int(sizes.sum()) - images
    if surplus > 0:  # drop surplus extra views, chosen uniformly among all extra views
        owners = np.repeat(np.arange(lesions), sizes - 1)
        np.subtract.at(sizes, owners[rng.choice(owners.size, surplus, replace=False)], 1)
    elif surplus < 0:
        np.add.at(sizes, rng.choice(lesions, -surplus), 1)
    return sizes


def _lesion_fields(rng: np.random.Generator, dx: str) -> dict[str, object]:
    """dx_type, age, sex and localization of one lesion, drawn from the real per-class mix."""

    def draw(values: tuple[str, ...], counts: tuple[int, ...]) -> str:
        return str(rng.choice(values, p=np.asarray(counts) / sum(counts)))

    sex = draw(SEXES, SEX_IMAGES[dx])
    mean, sd = AGE_MEAN_SD[dx]
    age = np.nan if sex == "unknown" else float(np.clip(5 * round(rng.normal(mean, sd) / 5), 0, 85))
    return {
        "dx_type": draw(DX_TYPES, DX_TYPE_IMAGES[dx]),
        "age": age,
        "sex": sex,
        "localization": draw(LOCALIZATIONS, LOCALIZATION_IMAGES[dx]),
    }


def _write_images(folder: Path, metadata: pd.DataFrame, seed: int, size: tuple[int, int]) -> None:
    """Render and save every image; lesion k's pixels depend only on (seed, k), not on order."""
    for part in PARTS:
        (folder / part).mkdir()
    last_part_1 = FIRST_IMAGE_NUMBER + round(len(metadata) * PART_1_SHARE) - 1
    started, done, step = time.monotonic(), 0, max(1, len(metadata) // 10)
    for k, (_, views) in enumerate(metadata.groupby("lesion_id", sort=False)):
        rng = np.random.default_rng([seed, k])
        lesion = _lesion_layer(rng, LOOKS[views["dx"].iat[0]], min(*size, RENDER_SIDE))
        skin = _skin_tone(rng)
        for image_id in views["image_id"]:
            part = PARTS[int(image_id.removeprefix("ISIC_")) > last_part_1]
            _view(rng, lesion, skin, size).save(folder / part / f"{image_id}.jpg", quality=JPEG_QUALITY)
            done += 1
            if done % step == 0 or done == len(metadata):
                log.info("synthetic images: %d/%d (%.0f s)", done, len(metadata), time.monotonic() - started)


def _lesion_layer(rng: np.random.Generator, look: _Look, side: int) -> Image.Image:
    """The lesion alone (RGBA, transparent around it) on a square canvas, drawn once per lesion."""
    u, v = _square_grid(side)
    aspect = 1 + abs(rng.normal(0, 0.15))
    rho = np.hypot(u / aspect, v)
    theta = np.arctan2(v, u)
    radius = float(np.clip(look.radius * np.exp(rng.normal(0, 0.2)), 0.15, 0.8))
    amplitudes = look.irregularity * np.abs(rng.normal(size=5)) / np.sqrt(np.arange(2, 7))
    phases = rng.uniform(0, 2 * np.pi, 5)
    wobble = sum(np.float32(a) * np.cos(k * theta + np.float32(p)) for k, a, p in zip(range(2, 7), amplitudes, phases))
    softness = np.float32(radius * rng.uniform(0.03, 0.1))
    # Inside the wobbly ellipse, faded out before the canvas edge so no lesion shows a straight cut.
    alpha = _sigmoid((radius * (1 + wobble) - rho) / softness) * _sigmoid((0.97 - np.hypot(u, v)) / 0.015)

    colour = np.asarray(look.colour) * np.exp(rng.normal(0, 0.15)) + rng.normal(0, 0.03, 3)  # shade, then hue
    colour = np.clip(colour, 0, 1).astype(np.float32)
    grain = look.grain * np.exp(rng.normal(0, 0.2))
    mottling = np.float32(look.mottling * np.exp(rng.normal(0, 0.3)))
    body = colour * (1 + 2 * mottling * (_noise(rng, grain, side) - 0.5))[..., None]
    if rng.random() < look.accent_chance:
        strength = np.float32(rng.uniform(0.4, 0.9))
        if look.accent == "centre":
            mask = _sigmoid((0.45 * radius - rho) / softness)
        elif look.accent == "veil":
            mask = np.clip((_noise(rng, 3, side) - 0.5) * 4, 0, 1)
        elif look.accent == "dots":
            mask = np.clip((_noise(rng, 3 * grain, side) - 0.6) * 6, 0, 1)
        else:  # vessels: the level line of a smooth field is a wiggly, branching curve
            mask = np.clip(1 - np.abs(_noise(rng, 5, side) - 0.5) / 0.03, 0, 1)
        mask = (strength * mask)[..., None]
        body = body + (np.asarray(look.accent_colour, dtype=np.float32) - body) * mask
    rgba = np.concatenate([np.clip(body, 0, 1), alpha[..., None]], axis=-1)
    return Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA")


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    """A patient's skin colour, between fair and brown, with a slight hue jitter (RGB in [0, 1])."""
    fair, brown = np.array((0.94, 0.78, 0.70)), np.array((0.72, 0.52, 0.40))
    tone = fair + (brown - fair) * rng.uniform() + rng.normal(0, 0.02, 3)
    return np.clip(tone, 0, 1).astype(np.float32)


def _view(rng: np.random.Generator, lesion: Image.Image, skin: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """One photograph of a lesion: new pose, skin texture, lighting, dermoscope frame and noise.

    Drawn at most `RENDER_SIDE` px high, smooth fields drawn smaller still and upsampled, and
    compositing done by Pillow: a 600×450 view costs ~15 ms on one core.
    """
    factor = min(1.0, RENDER_SIDE / min(size))
    work = (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))
    width, height = work
    angle = rng.uniform(0, 2 * np.pi)
    zoom = lesion.width / min(work) / np.exp(rng.normal(0, 0.07))  # layer pixels per view pixel
    cx, cy = width * (0.5 + rng.normal(0, 0.06)), height * (0.5 + rng.normal(0, 0.06))
    a, b, half = zoom * np.cos(angle), zoom * np.sin(angle), lesion.width / 2
    affine = (a, b, half - a * cx - b * cy, -b, a, half + b * cx - a * cy)
    placed = lesion.transform(work, Image.Transform.AFFINE, affine, Image.Resampling.BILINEAR)

    tone = skin * (1 + 0.1 * (rng.random((5, 7, 1), dtype=np.float32) - 0.5))
    image = _upsampled(tone, work, Image.Resampling.BICUBIC)
    image.paste(placed, mask=placed)

    r = _radius_grid(max(2, width // 4), max(2, height // 4))
    light = 1 - rng.uniform(0.05, 0.25) * r**2
    if rng.random() < 0.35:  # the dark circular frame of a dermoscope
        light = light * _sigmoid((rng.uniform(0.8, 1.0) - r) / 0.02)
    gain = rng.uniform(0.85, 1.0) * np.clip(1 + rng.normal(0, 0.03, 3), 0, 1 / 0.85)
    light = _upsampled(light[..., None] * gain.astype(np.float32), work, Image.Resampling.BILINEAR)
    image = ImageChops.multiply(image, light)
    if work != size:
        image = image.resize(size, Image.Resampling.BICUBIC)

    grain = rng.integers(-4, 5, (size[1], size[0], 1), dtype=np.int16)  # sensor noise, at full size
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8), "RGB")


def _upsampled(rgb: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """An RGB image of `size` from a small float array in [0, 1] of shape (h, w, 3)."""
    small = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    return small.resize(size, resample)


def _noise(rng: np.random.Generator, cells: float, width: int, height: int | None = None) -> np.ndarray:
    """Smooth random field in about [0, 1]: uniform cells upsampled bicubically (Pillow)."""
    height = width if height is None else height
    cells_x = max(2, round(cells))
    cells_y = max(2, round(cells * height / width))
    coarse = Image.fromarray(rng.random((cells_y, cells_x), dtype=np.float32), "F")
    return np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC))


@functools.lru_cache(maxsize=4)
def _square_grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of a side×side canvas in [-1, 1] (read-only, cached per size)."""
    axis = (np.arange(side, dtype=np.float32) + 0.5) / side * 2 - 1
    u, v = np.meshgrid(axis, axis)
    u.flags.writeable = v.flags.writeable = False
    return u, v


@functools.lru_cache(maxsize=4)
def _radius_grid(width: int, height: int) -> np.ndarray:
    """Distance of each pixel from the image centre, 1 at the middle of the long edges (cached)."""
    x = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / (max(width, height) / 2)
    y = (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / (max(width, height) / 2)
    r = np.hypot(x[None, :], y[:, None])
    r.flags.writeable = False
    return r


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x, -30, 30)))
