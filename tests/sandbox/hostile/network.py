"""Reaching the network or the host's sockets from a tenant."""

from __future__ import annotations

import ctypes
import socket

from . import Context, Result, failed, syscall_attempt


def _connect(family: int, kind: int, address: object, what: str) -> Result:
    try:
        sock = socket.socket(family, kind)
    except OSError as exc:
        return failed(f"socket({what})", exc)
    with sock:
        sock.settimeout(2)
        try:
            sock.connect(address)
        except OSError as exc:
            return failed("connect", exc)
    return True, f"connected to {address!r}"


def tcp_connect(ctx: Context) -> Result:
    """TCP to a listener the host opened on 127.0.0.1."""
    return _connect(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", ctx["tcp_port"]), "inet")


def ipv6_connect(ctx: Context) -> Result:
    """TCP over IPv6 to ::1."""
    return _connect(socket.AF_INET6, socket.SOCK_STREAM, ("::1", ctx["tcp6_port"]), "inet6")


def udp_sendto(ctx: Context) -> Result:
    """A UDP datagram to the host's socket on 127.0.0.1."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        return failed("socket(inet, dgram)", exc)
    with sock:
        try:
            sock.sendto(b"escape", ("127.0.0.1", ctx["udp_port"]))
        except OSError as exc:
            return failed("sendto", exc)
    return True, "datagram sent"


def socket_domain_high_bits(ctx: Context) -> Result:
    """socket(AF_INET) with a high bit set in the domain, which the kernel truncates away."""
    return syscall_attempt(
        "socket", ctypes.c_long(0x1_0000_0000 | socket.AF_INET), ctypes.c_long(1), ctypes.c_long(0)
    )


def netlink_socket(ctx: Context) -> Result:
    """An AF_NETLINK socket (interfaces, routes, the kernel's event streams)."""
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()
    except OSError as exc:
        return failed("socket(netlink)", exc)
    return True, "netlink socket created"


def packet_socket(ctx: Context) -> Result:
    """An AF_PACKET socket (raw frames)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()
    except OSError as exc:
        return failed("socket(packet)", exc)
    return True, "packet socket created"


def abstract_unix_connect(ctx: Context) -> Result:
    """Connect to an abstract unix socket the host listens on."""
    return _connect(socket.AF_UNIX, socket.SOCK_STREAM, ctx["abstract"], "unix")


def pathname_unix_connect(ctx: Context) -> Result:
    """Connect to a pathname unix socket the host listens on (in a tmp dir)."""
    return _connect(socket.AF_UNIX, socket.SOCK_STREAM, ctx["unix_path"], "unix")


def unix_datagram_sendto(ctx: Context) -> Result:
    """A datagram to a pathname unix socket (think /dev/log) from an unconnected socket."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError as exc:
        return failed("socket(unix, dgram)", exc)
    with sock:
        try:
            sock.sendto(b"escape", ctx["unix_dgram_path"])
        except OSError as exc:
            return failed("sendto", exc)
    return True, "datagram sent"


def unix_datagram_sendmsg(ctx: Context) -> Result:
    """The same through sendmsg, whose address seccomp cannot see, on a datagram socketpair."""
    try:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError as exc:
        return failed("socketpair(unix, dgram)", exc)
    with left, right:
        try:
            left.sendmsg([b"escape"], [], 0, ctx["unix_dgram_path"])
        except OSError as exc:
            return failed("sendmsg", exc)
    return True, "datagram sent"
