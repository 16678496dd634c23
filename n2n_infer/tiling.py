"""Large images in fixed-size overlapping tiles, blended without seams, with bounded memory.

How it stays exact: tiles start at multiples of the model's stride (so pooling
sees the same grid as an untiled run); each tile's weight is zero over a
*margin* at its inner edges at least as wide as the model's receptive radius
(the only pixels that zero padding at a tile edge can change), then rises as a
raised cosine to one across the rest of the overlap. Weights are normalised so
that they sum to one at every pixel. Every pixel is therefore a blend of tile
outputs that each equal the untiled output, and the result matches an untiled
run up to float rounding (the tests allow 1/255).

How memory stays bounded: tiles are cut from the caller's array one at a
time (converted to float32 per tile), run in batches of ``batch_size`` (tiles
of consecutive images share a batch when their shapes agree), and blended
into one float32 band of tile-height rows; each finished band is written into
the output array in the caller's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from n2n_infer.arrays import ImageArray, to_unit, write_rows
from n2n_infer.padding import pad_bottom_right


@dataclass(frozen=True)
class TileSpec:
    """Tile geometry in pixels: ``size`` (edge) and ``overlap`` with neighbours.

    Both are multiples of the model's stride and ``size > 2 * overlap``; the
    zero-weight margin at inner tile edges is ``overlap // 4``.
    """

    size: int
    overlap: int

    def check(self, stride: int) -> None:
        """Raise ``ValueError`` naming the problem if this geometry is unusable."""
        for name, value in (("tile size", self.size), ("tile overlap", self.overlap)):
            if value < stride or value % stride:
                raise ValueError(f"{name} {value} must be a positive multiple of stride {stride}")
        if self.size <= 2 * self.overlap:
            smallest = (2 * self.overlap // stride + 1) * stride
            raise ValueError(
                f"tile size {self.size} must exceed twice the tile overlap of "
                f"{self.overlap} pixels: use {smallest} or more"
            )


def default_tile_size(overlap: int, stride: int, base: int = 512) -> int:
    """``base``, or for a wide overlap the multiple of ``stride`` nearest above 4 × overlap,
    so that at least half of each tile's width is its own output."""
    size = max(base, 4 * overlap)
    return -(-size // stride) * stride


def default_overlap(radius: int, stride: int) -> int:
    """Four margins, each the model's receptive radius (``radius`` px, as its metadata
    states: :attr:`~n2n_infer.metadata.ModelInfo.receptive_radius`) rounded up to the
    stride (one stride at least, so that tiles always overlap)."""
    margin = max(1, math.ceil(radius / stride)) * stride
    return 4 * margin


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Starts of tiles covering ``length`` (padded) pixels; the last tile ends at ``length``."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, size - overlap))
    return [*starts, length - size]


def tile_count(size_hw: tuple[int, int], spec: TileSpec, stride: int) -> int:
    """How many tiles :func:`denoise_tiled` cuts an image of ``size_hw`` into."""
    padded = [-(-n // stride) * stride for n in size_hw]  # as _Assembly pads them
    rows, cols = (len(tile_starts(n, spec.size, spec.overlap)) for n in padded)
    return rows * cols


def axis_weights(starts: list[int], size: int, length: int, overlap: int) -> list[np.ndarray]:
    """Per-tile 1-D blending weights along one axis, normalised to sum to one per pixel."""
    margin = overlap // 4
    d = np.arange(overlap, dtype=np.float64)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (d - margin + 0.5) / (overlap - 2 * margin))
    ramp = np.where(d < margin, 0.0, np.where(d >= overlap - margin, 1.0, ramp))
    t = min(size, length)
    weights = []
    for i in range(len(starts)):
        w = np.ones(t)
        if i > 0:
            w[:overlap] *= ramp
        if i < len(starts) - 1:
            w[-overlap:] *= ramp[::-1]
        weights.append(w)
    total = np.zeros(length)
    for s, w in zip(starts, weights, strict=True):
        total[s : s + t] += w
    assert total.min() > 0, "tiles leave a pixel without weight"
    return [(w / total[s : s + t]).astype(np.float32) for s, w in zip(starts, weights, strict=True)]


class _Assembly:
    """Cuts one image into tiles and blends the denoised tiles back, band by band."""

    def __init__(self, img: ImageArray, spec: TileSpec, stride: int, out: np.ndarray) -> None:
        self.img, self.out = img, out
        self.h, self.w = img.size_hw
        hp, wp = -(-self.h // stride) * stride, -(-self.w // stride) * stride
        self.th, self.tw = min(spec.size, hp), min(spec.size, wp)
        self.ys, self.xs = (
            tile_starts(hp, spec.size, spec.overlap),
            tile_starts(wp, spec.size, spec.overlap),
        )
        self.wy = axis_weights(self.ys, spec.size, hp, spec.overlap)
        self.wx = axis_weights(self.xs, spec.size, wp, spec.overlap)
        self.band = np.zeros((3, self.th, wp), np.float32)
        self.band_row = 0  # tile row the band is aligned to
        self.remaining = len(self.ys) * len(self.xs)

    def tiles(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """(tile row, tile column, float32 3×th×tw tile) in row-major order."""
        for ty, y in enumerate(self.ys):
            for tx, x in enumerate(self.xs):
                part = self.img.rgb[y : y + self.th, x : x + self.tw]
                h, w = part.shape[:2]
                chw = to_unit(part, self.img.levels, np.empty((3, h, w), np.float32))
                yield ty, tx, pad_bottom_right(chw, self.th - h, self.tw - w)

    def add(self, ty: int, tx: int, denoised_chw: np.ndarray) -> None:
        """Blend one denoised tile in; finished rows go to the output."""
        if ty != self.band_row:
            self._advance(ty)
        x = self.xs[tx]
        weighted = denoised_chw * self.wy[ty][:, None]  # separable weights: no th×tw array
        weighted *= self.wx[tx]
        self.band[:, :, x : x + self.tw] += weighted
        self.remaining -= 1
        if self.remaining == 0:
            self._emit(self.th)

    def _advance(self, ty: int) -> None:
        shift = self.ys[ty] - self.ys[self.band_row]
        self._emit(shift)
        self.band[:, : self.th - shift] = self.band[:, shift:]
        self.band[:, self.th - shift :] = 0.0
        self.band_row = ty

    def _emit(self, rows: int) -> None:
        y0 = self.ys[self.band_row]
        rows = min(rows, self.h - y0)
        if rows > 0:
            write_rows(self.img, self.out, y0, self.band[:, :rows, : self.w])


def denoise_tiled(
    images: Iterable[tuple[ImageArray, np.ndarray]],
    spec: TileSpec,
    stride: int,
    batch_size: int,
    run: Callable[[np.ndarray], np.ndarray],
    on_tile: Callable[[], None] | None = None,
) -> Iterator[np.ndarray]:
    """Denoise images tile by tile; yields each filled output array, in order.

    ``images`` gives (checked image, output array to fill, from
    :func:`~n2n_infer.arrays.new_output`); ``run`` maps float32 N×3×h×w to the
    model's output of the same shape. Tiles of consecutive images of the same
    tile shape run in one batch of at most ``batch_size``. ``on_tile`` is
    called once for each tile, when it has been denoised and blended in
    (:func:`tile_count` tells how many tiles an image has).
    """
    pending: list[tuple[_Assembly, int, int, np.ndarray]] = []
    open_jobs: list[_Assembly] = []

    def flush() -> None:
        outs = run(np.stack([p[3] for p in pending]))
        for (job, ty, tx, _), out in zip(pending, outs, strict=True):
            job.add(ty, tx, out)
            if on_tile is not None:
                on_tile()
        pending.clear()

    for img, out in images:
        job = _Assembly(img, spec, stride, out)
        open_jobs.append(job)
        for ty, tx, tile in job.tiles():
            if pending and (len(pending) == batch_size or pending[0][3].shape != tile.shape):
                flush()
            pending.append((job, ty, tx, tile))
            while open_jobs and open_jobs[0].remaining == 0:
                yield open_jobs.pop(0).out
    if pending:
        flush()
    for job in open_jobs:
        yield job.out


def denoise_context_tiled(
    context: np.ndarray,
    spec: TileSpec,
    stride: int,
    batch_size: int,
    run: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """A z-context model's float32 H×W output for one float32 C×H×W context (its ``C``
    planes in [0, 1]), tile by tile: each tile cuts all ``C`` planes at one place, the
    model gives one plane for it, and the tiles are blended with the weights of
    :func:`denoise_tiled` (so tiled and untiled outputs agree as they do there). ``run``
    maps float32 N×C×h×w to N×1×h×w."""
    _, h, w = context.shape
    hp, wp = -(-h // stride) * stride, -(-w // stride) * stride
    th, tw = min(spec.size, hp), min(spec.size, wp)
    ys, xs = tile_starts(hp, spec.size, spec.overlap), tile_starts(wp, spec.size, spec.overlap)
    wy, wx = (
        axis_weights(ys, spec.size, hp, spec.overlap),
        axis_weights(xs, spec.size, wp, spec.overlap),
    )
    out = np.zeros((hp, wp), np.float32)
    places = [(ty, tx) for ty in range(len(ys)) for tx in range(len(xs))]
    for start in range(0, len(places), batch_size):
        part = places[start : start + batch_size]
        tiles = []
        for ty, tx in part:
            cut = context[:, ys[ty] : ys[ty] + th, xs[tx] : xs[tx] + tw]
            tiles.append(pad_bottom_right(cut, th - cut.shape[1], tw - cut.shape[2]))
        for (ty, tx), plane in zip(part, run(np.stack(tiles)), strict=True):
            weighted = plane[0] * wy[ty][:, None]
            weighted *= wx[tx]
            out[ys[ty] : ys[ty] + th, xs[tx] : xs[tx] + tw] += weighted
    return out[:h, :w]
