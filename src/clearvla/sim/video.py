"""Writing episode frames to MP4 (PyAV, H.264) or GIF (Pillow), with the instruction as a caption bar."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from clearvla.errors import ConfigError

VIDEO_SUFFIXES = (".mp4", ".gif")
_CAPTION_LINE = 14  # px per caption line


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """`frame` [H, W, 3] uint8 with `text` written in a black bar below it; returns [H + bar, W, 3]."""
    h, w, _ = frame.shape
    lines = textwrap.wrap(text, width=max(8, w // 7)) or [""]
    bar = _CAPTION_LINE * len(lines) + 6
    canvas = Image.new("RGB", (w, h + bar))
    canvas.paste(Image.fromarray(frame), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, line in enumerate(lines):
        draw.text((4, h + 3 + i * _CAPTION_LINE), line, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def write_video(frames: Sequence[np.ndarray], path: str | Path, *, fps: float) -> Path:
    """Write RGB frames (all [H, W, 3] uint8, same size) to `path`; the suffix picks MP4 or GIF."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"video file must end in {' or '.join(VIDEO_SUFFIXES)}, got {path.name!r}")
    if not frames:
        raise ConfigError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
        return path
    import av  # only MP4 needs PyAV

    h, w, _ = frames[0].shape
    # yuv420p needs even sides.
    h2, w2 = h - h % 2, w - w % 2
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        stream.options = {"crf": "20"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h2, :w2]), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
