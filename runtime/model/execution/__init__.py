"""Running the compiled graphs: which execution providers work (`providers`, `cuda_env`), ONNX
Runtime sessions (`sessions`) and device-resident graphs (`device_graphs`).
"""
