"""The GUI's backend implemented with `runtime/` (the one module of the app that calls it).

Functions here run on whichever thread calls them: the GUI thread for quick queries, a worker
thread for downloads, conversions and the engine. Progress and frame callbacks are passed
through unchanged, so they arrive on runtime threads; the GUI turns them into signals.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from desktop_app.gallery import CropSquare
from desktop_app.images import RGB
from desktop_app.services import (
    Cancelled,
    ModelState,
    Offline,
    Progress,
    ProgressFn,
    Timing,
    UserError,
)
from desktop_app.settings import Pose, Quality
from runtime.core import units
from runtime.media import avatar_image, face_crop
from runtime.model import transfer
from runtime.model.compile import cache as compiled_cache
from runtime.model.compile import graph_version
from runtime.model.download import model_download
from runtime.model.store import errors as store_errors
from runtime.model.store import model_store

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- avatars


class RuntimeAvatars:
    def load_photo(self, path: Path) -> RGB:
        try:
            return avatar_image.load_avatar_image(path)
        except avatar_image.AvatarImageError as exc:
            raise UserError(str(exc)) from None

    def detect_face(self, photo: RGB) -> CropSquare | None:
        faces = face_crop.detect_faces(photo)
        if not faces:
            return None
        box = face_crop.crop_box_for_face(faces[0])
        left, top, right, _ = box.pixel_bounds()
        return CropSquare(x=left, y=top, size=right - left)

    def crop(self, photo: RGB, square: CropSquare, size: int | None = None) -> RGB:
        box = face_crop.CropBox.from_corner(square.x, square.y, square.size)
        return face_crop.crop_to_box(photo, box, size=size or face_crop.AVATAR_SIZE)


# ---------------------------------------------------------------- models


def _progress_from_transfer(p: transfer.TransferProgress) -> Progress:
    verb = {"download": "Downloading", "copy": "Importing", "verify": "Checking"}[p.phase]
    done = units.human_bytes(p.done)
    total = units.human_bytes(p.total) if p.total is not None else "?"
    return Progress(
        phase=p.phase,
        label=f"{verb} {p.path} ({p.file_index + 1}/{p.file_count}) · {done} of {total}",
        fraction=p.fraction,
        speed=p.speed,
        eta=p.eta,
    )


def _progress_from_conversion(p: compiled_cache.ConversionProgress) -> Progress:
    return Progress(
        phase="convert",
        label=f"Converting {p.graph} ({p.done}/{p.total})",
        fraction=p.done / p.total if p.total else None,
    )


def _ready(graphs: Path, detail: str) -> ModelState:
    try:
        version = graph_version.graphs_version(graphs)
    except graph_version.GraphVersionError as exc:
        return ModelState(False, None, (), str(exc))
    return ModelState(
        True,
        graphs,
        (),
        detail,
        model_version=version.name,
        source_size=version.source_size,
        default_cfg=version.default_cfg,
    )


class RuntimeModels:
    """The model store, its download/import and the compiled-graph cache.

    `graphs_dir` short-cuts all of it (tests and developers point it at ready graphs);
    `download_options` and `convert_command` are passed on to the runtime (a local hub and a
    stand-in exporter in tests); `bench_clock` is what the timing run measures with (tests: the
    clock of a slow machine).
    """

    def __init__(
        self,
        *,
        store: model_store.ModelStore | None = None,
        graphs_dir: Path | None = None,
        download_options: model_download.DownloadOptions | None = None,
        convert_command: Sequence[str] | None = None,
        bench_clock: Callable[[], float] = time.perf_counter,
    ):
        self.store = store or model_store.ModelStore()
        self.bench_clock = bench_clock
        self.graphs_dir = graphs_dir
        self.download_options = download_options or model_download.DownloadOptions()
        self.convert_command = convert_command

    def model_state(self) -> ModelState:
        if self.graphs_dir is not None:
            return _ready(self.graphs_dir, f"Using the graphs in {self.graphs_dir}.")
        status = self.store.status()
        # A rebuilt store.json is told in the detail line, before what it means now.
        told = f"{status.notice} " if status.notice else ""
        installed = self.store.model_version()
        if not status.complete:
            return ModelState(
                False,
                None,
                status.missing,
                f"{told}The model files go to {self.store.root}.",
                model_version=installed,
            )
        converted = compiled_cache.converted_dir(self.store)
        if converted is None:
            return ModelState(
                False, None, (), f"{told}The model still needs converting.", model_version=installed
            )
        return _ready(converted, f"{told}Converted graphs in {converted}.")

    def download(self, *, progress: ProgressFn, cancel: threading.Event) -> None:
        try:
            model_download.download_model(
                self.store,
                options=self.download_options,
                progress=lambda p: progress(_progress_from_transfer(p)),
                cancel=cancel,
            )
        except model_download.OfflineError as exc:
            raise Offline(str(exc).split("\n")[0]) from None
        except store_errors.Cancelled:
            raise Cancelled("cancelled") from None
        except store_errors.ModelStoreError as exc:
            raise UserError(str(exc)) from None

    def import_files(
        self, paths: Sequence[Path], *, progress: ProgressFn, cancel: threading.Event
    ) -> tuple[str, ...]:
        try:
            result = self.store.import_files(
                list(paths),
                progress=lambda p: progress(_progress_from_transfer(p)),
                cancel=cancel,
            )
        except store_errors.Cancelled:
            raise Cancelled("cancelled") from None
        except store_errors.ModelStoreError as exc:
            raise UserError(str(exc)) from None
        return result.missing

    def convert(self, *, progress: ProgressFn, cancel: threading.Event) -> Path:
        try:
            return compiled_cache.convert(
                self.store,
                progress=lambda p: progress(_progress_from_conversion(p)),
                cancel=cancel,
                command=self.convert_command,
            )
        except store_errors.Cancelled:
            raise Cancelled("cancelled") from None
        except store_errors.ModelStoreError as exc:
            raise UserError(str(exc)) from None

    def measure(self, *, progress: ProgressFn, cancel: threading.Event) -> Timing:
        from desktop_app.runtime_services.expectation import result_expectation
        from desktop_app.runtime_services.live import controls_for
        from runtime.core import paths
        from runtime.engine.bench import BenchSettings, run_bench, write_result
        from runtime.model.execution.model_set import open_model_set
        from runtime.model.execution.sessions import SessionOptions

        state = self.model_state()
        if not state.ready or state.graphs_dir is None:
            raise UserError("the model is not converted yet")

        settings = BenchSettings()
        # The bench's stages: the avatar encoding, the renderer's memory, the renderer at each
        # batch up to the hop, the audio encoder and the sampler.
        total = 4 + settings.hop
        done = [0]

        def stage(name: str) -> None:
            if cancel.is_set():
                raise Cancelled("cancelled")
            progress(Progress("measure", f"Timing the {name}", min(done[0] / total, 0.99)))
            done[0] += 1

        models = open_model_set(state.graphs_dir, options=SessionOptions())
        result = run_bench(
            models,
            settings=settings,
            progress=stage,
            graphs=state.graphs_dir,
            clock=self.bench_clock,
        )
        write_result(result, paths.cache_dir())
        return Timing(
            verdict=result.verdict[:1].upper() + result.verdict[1:],
            not_real_time=result_expectation(result, controls_for(Pose(), Quality())),
        )

    def offline_help(self) -> str:
        options = self.download_options
        revision = model_download.resolve_revision(self.store, options)
        steps = model_download.manual_steps(self.store, options=options, revision=revision)
        # The runtime's steps end with the terminal's import command; here the next step is
        # the dialog's own button.
        lines = []
        for line in steps.splitlines():
            if line.lstrip().startswith("3."):
                line = "  3. In this window, press “Import files…” and choose that folder."
            elif "import command" in line:
                continue
            lines.append(line)
        return "\n".join(lines)
