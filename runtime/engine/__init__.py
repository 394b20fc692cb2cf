"""From inputs to frames: the live streaming engine (`runtime.engine.live`: workers, the hop
scheduler, pacing, latency, the session builder) and what it shares with the offline renderer at
this level (audio features, the flow-matching sampler, condition tracks, the stage bench).

May use `runtime.sinks`, `runtime.media`, `runtime.model` and `runtime.core`.
"""
