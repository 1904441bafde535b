"""Writing frames: an .mp4 or .gif video, a folder of PNG frames, or one .png of evenly spaced
frames tiled side by side."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import RenderError

VIDEO_EXTS = (".mp4", ".gif")
STILL_EXT = ".png"
SHEET_FRAMES = 5  # frames tiled into one picture when the output ends with .png


# -- outputs ------------------------------------------------------------------------------

def output_kind(out) -> str:
    """'mp4', 'gif', 'png' (one picture: frames tiled) or 'dir' (a folder of PNG frames)."""
    s = str(out)
    p = Path(s)
    if s.endswith(("/", os.sep)) or p.suffix == "" or p.is_dir():
        return "dir"
    ext = p.suffix.lower()
    if ext in VIDEO_EXTS:
        return ext[1:]
    if ext == STILL_EXT:
        return "png"
    raise RenderError(f"cannot write {s!r}: unknown extension {p.suffix!r}; use .mp4, .gif, .png (frames tiled "
                      "into one picture) or a folder (ending in '/') for PNG frames")


class FrameWriter:
    """Streams frames to an .mp4/.gif, a folder of PNGs, or one tiled .png."""

    def __init__(self, out, fps: float = 20, width: int = 640, height: int = 480):
        self.kind = output_kind(out)
        self.path = Path(str(out).rstrip("/" + os.sep) if self.kind == "dir" else out)
        self.fps = float(fps)
        self.count = 0
        self._writer = None
        self._kept = []
        if self.kind == "mp4" and (width % 2 or height % 2):
            raise RenderError(f"an .mp4 needs an even width and height, got {width}x{height}")
        try:
            if self.kind == "dir":
                self.path.mkdir(parents=True, exist_ok=True)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RenderError(f"cannot create {str(self.path)!r}: {exc.strerror or exc}") from exc
        import imageio.v2 as iio

        if self.kind == "mp4":
            self._writer = iio.get_writer(str(self.path), fps=self.fps, codec="libx264", quality=8,
                                          macro_block_size=2, pixelformat="yuv420p")
        elif self.kind == "gif":
            self._writer = iio.get_writer(str(self.path), mode="I", duration=1000.0 / self.fps, loop=0)

    def append(self, frame: np.ndarray):
        import imageio.v2 as iio

        if self.kind == "dir":
            iio.imwrite(str(self.path / f"frame_{self.count:05d}.png"), frame)
        elif self.kind == "png":
            self._kept.append(frame)
        else:
            self._writer.append_data(frame)
        self.count += 1

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.kind == "png" and self._kept:
            import imageio.v2 as iio

            iio.imwrite(str(self.path), tile_frames(self._kept, SHEET_FRAMES))
            self._kept = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def tile_frames(frames, k: int = SHEET_FRAMES, gap: int = 4) -> np.ndarray:
    """k evenly spaced frames (first and last included) side by side, white gaps between."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int))
    h, w, c = frames[0].shape
    sheet = np.full((h, len(idx) * w + (len(idx) - 1) * gap, c), 255, dtype=np.uint8)
    for j, i in enumerate(idx):
        sheet[:, j * (w + gap): j * (w + gap) + w] = frames[i]
    return sheet
