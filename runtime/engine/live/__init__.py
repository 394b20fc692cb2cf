"""The live engine: one session (`session`) hosts one worker (`worker`: local audio, remote audio,
webcam) under `engine`; audio-driven hops go through the one hop scheduler (`hop_scheduler`,
`hop`, `plan`, `hop_choice`); frames leave through the pacer (`pacer`); `latency` keeps the health
numbers and `types` the values it is told and tells.
"""
