"""The render server: one client session on a replica (`session`, `connection`), the Ray Serve
application (`deployment`) and its token (`token`). Above `runtime.engine` (it runs its hops),
below `runtime.commands`."""
