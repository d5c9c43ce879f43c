"""The operator tool: `fabric up`, `fabric keys`, and the JSON-RPC client commands."""
