"""Rewriting what a crashed recording left into an ordinary MP4 (runs on the caller's thread).

The recorder writes fragmented MP4 (`FRAGMENTED`): every fragment is complete on disk once the
next keyframe starts, so a killed process leaves a file that can be read up to its last whole
fragment. `remux` copies the packets of that file (no re-encoding) into a new MP4 and stops at
the first damaged byte, keeping everything before it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Final

import av
import av.error

logger = logging.getLogger(__name__)

#: Muxer options of a recording that survives a crash: a self-contained fragment per keyframe,
#: the index written with the first one (`delay_moov`: by then it knows the edit lists that
#: hide the encoders' delays, which `empty_moov` would leave out and shift the audio).
FRAGMENTED: Final = {"movflags": "frag_keyframe+delay_moov+default_base_moof"}


class RemuxError(Exception):
    """Nothing could be read back from the file."""


def remux(src: Path, dst: Path) -> float:
    """Copy the audio and video packets of `src` into a new MP4 at `dst`; the seconds of
    video kept. RemuxError (and no `dst`) when `src` holds no readable video."""
    try:
        source = av.open(str(src), mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        raise RemuxError(f"{src.name} cannot be read ({exc})") from None
    kept = 0.0
    try:
        streams = [s for s in source.streams if s.type in ("video", "audio")]
        if not any(s.type == "video" for s in streams):
            raise RemuxError(f"{src.name} holds no video")
        with av.open(str(dst), mode="w", format="mp4") as out:
            mapping: dict[int, Any] = {}
            for stream in streams:
                mapping[stream.index] = out.add_stream_from_template(stream)
            packets = 0
            with contextlib.suppress(av.error.FFmpegError):
                for packet in source.demux(streams):
                    if packet.dts is None or packet.size == 0:
                        continue
                    if packet.stream.type == "video" and packet.pts is not None:
                        end = packet.pts + (packet.duration or 0)
                        kept = max(kept, float(end * packet.time_base))
                    packet.stream = mapping[packet.stream.index]
                    out.mux(packet)
                    packets += 1
        if packets == 0:
            dst.unlink(missing_ok=True)
            raise RemuxError(f"{src.name} holds no complete frame")
    except RemuxError:
        raise
    except (av.error.FFmpegError, OSError) as exc:
        dst.unlink(missing_ok=True)
        raise RemuxError(f"{src.name} cannot be rewritten ({exc})") from None
    finally:
        source.close()
    return kept
