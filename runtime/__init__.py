"""Everything that runs live or offline on ONNX Runtime; never torch, never Qt.

Layers, top to bottom (each may import only the ones below it; `lint-imports` enforces it):

- `runtime.commands`: the `imtalker-cam` command line and its subcommands (main thread).
- `runtime.engine`: the streaming engine, motion sampling, pacing, offline rendering.
- `runtime.sinks`: where frames go (virtual camera, preview, recorder).
- `runtime.media`: photos, audio and video files, microphone, webcam.
- `runtime.model`: graph contract, sessions and providers, model store, downloads, compiled cache.
- `runtime.core`: paths, files, units, clocks: no imports from the layers above.
"""
