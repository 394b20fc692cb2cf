"""The model store: the published checkpoints on disk, their `store.json` record, import, recovery
and the version checks (`model_store.ModelStore` is the entry point).
"""
