"""From inputs to frames: the live streaming engine (`live`), its value types (`types`), audio
timeline and features, the flow-matching sampler, motion retiming and pacing, latency figures,
and the offline renderer.

May use `runtime.sinks`, `runtime.media`, `runtime.model` and `runtime.core`.
"""
