"""The model as files and graphs: the ONNX graph contract and model versions (here), the model store
(`store`: trust, import, recovery), the download (`download`), the compiled-graph cache
(`compile`) and running the graphs (`execution`: providers, sessions, device-resident graphs).

May use `runtime.core` only; knows nothing of media, live video or the command line.
"""
