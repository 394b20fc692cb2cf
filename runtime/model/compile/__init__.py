"""The compiled graphs: converting the store's checkpoints to ONNX once (`cache`), finding them for
a weights folder (`weights`) and telling which model version a folder holds (`graph_version`).
"""
