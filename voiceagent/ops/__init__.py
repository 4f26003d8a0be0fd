"""The operator side: who may see what (auth), the live calls and their supervision (listen-in,
takeover), recordings, alerts, metrics, call history and the dashboard, behind `/console`,
`/api/ops/...` and `/metrics`."""
