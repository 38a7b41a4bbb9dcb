"""The HTTP + WebSocket bridge: a separate process that serves the REST API, the terminal
WebSockets and the web page, talking to the daemon only over IPC."""
