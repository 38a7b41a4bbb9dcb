"""launchd socket activation: the listening fds of a plist's ``Sockets`` entry (macOS).

launchd does not use ``LISTEN_FDS``; a job asks for its sockets by name with
``launch_activate_socket(3)``. The daemon's plist names its socket
:data:`tundra.service.units.LAUNCHD_SOCKET_NAME` (``"Listeners"``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

from tundra.service.units import LAUNCHD_SOCKET_NAME

__all__ = ["launchd_socket_fds"]


def launchd_socket_fds(name: str = LAUNCHD_SOCKET_NAME) -> list[int]:
    """The fds launchd created for ``name``; ``[]`` when not started by launchd (or not macOS).

    Raises OSError for real failures (e.g. ``EALREADY``: asked twice).
    """
    if sys.platform != "darwin":
        return []
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        activate = libc.launch_activate_socket
    except AttributeError:  # macOS < 10.10
        return []
    activate.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_int)),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    activate.restype = ctypes.c_int
    fds = ctypes.POINTER(ctypes.c_int)()
    count = ctypes.c_size_t(0)
    err = activate(name.encode(), ctypes.byref(fds), ctypes.byref(count))
    if err in (errno.ESRCH, errno.ENOENT):
        # ESRCH: this process is not managed by launchd; ENOENT: no such socket in the plist.
        return []
    if err:
        raise OSError(err, f"launch_activate_socket({name!r}): {os.strerror(err)}")
    try:
        return [fds[i] for i in range(count.value)]
    finally:
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free(fds)
