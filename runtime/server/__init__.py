"""The render server: one client session on a replica (`session`, `connection`) and the Ray
Serve application (`deployment`); its token is `runtime.remote.token`. Above `runtime.engine`
(it runs its hops), below `runtime.commands`."""
