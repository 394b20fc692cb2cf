"""What comes in from the user's world: photos (loading, face crop), audio and video files,
the microphone, the webcam, real-time playback of a file as a microphone.

May use `runtime.model` (sizes and rates from the graph contract) and `runtime.core`.
"""
