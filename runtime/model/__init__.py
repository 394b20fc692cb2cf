"""The model as files and graphs: the ONNX graph contract, execution providers and sessions,
the model store (trust, import, download), the compiled-graph cache and the weights folders.

May use `runtime.core` only; knows nothing of media, live video or the command line.
"""
