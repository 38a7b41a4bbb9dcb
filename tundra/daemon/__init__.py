"""The daemon process: lifecycle, services, built-in IPC methods, events, lock."""
