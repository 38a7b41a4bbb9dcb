"""IPC over a Unix socket: length-prefixed msgpack frames (see :mod:`tundra.ipc.protocol`)."""

from tundra.ipc.client import BlockingClient, Client, ClientStream, open_client
from tundra.ipc.errors import IpcError
from tundra.ipc.protocol import MAX_FRAME, PROTOCOL_VERSION

__all__ = ["BlockingClient", "Client", "ClientStream", "IpcError", "MAX_FRAME", "PROTOCOL_VERSION", "open_client"]
