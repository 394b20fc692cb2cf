"""Remote compute: the wire protocol, frame/audio codecs and the client link (a layer between
`runtime.engine` and `runtime.sinks`; the server is `runtime.server`)."""
