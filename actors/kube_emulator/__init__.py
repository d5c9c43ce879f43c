"""The kube emulator: a local stand-in for a Kubernetes API server (development and tests only).

Real kubectl and real kubernetes-asyncio talk to it unchanged. Modules: `resources` (the kinds
served), `paths` (URL to target), `errors` (canonical Status bodies), `validation`, `selectors`,
`patch`, `ownership` (managedFields, server-side apply), `objects` (server-side metadata
rules), `store` (the store actor, sole owner of all objects), `watch_hub`, `persistence`
(journal + snapshot), `messages`, `api` (resource requests), `watch` (streams), `table`,
`protobuf`, `control` (fault injection and request log), `discovery`, `tls`, `kubeconfig`,
`server` (aiohttp app, auth, admin endpoints), `main` (the process).
"""
