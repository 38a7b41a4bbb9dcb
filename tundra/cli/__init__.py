"""The `tundra` command line: a thin client of the daemon's IPC socket."""
