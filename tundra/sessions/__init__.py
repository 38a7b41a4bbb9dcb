"""Terminals owned by the daemon: PTY processes, the pool, scrollback, status, orphans."""
