"""Policy on the mail-server addresses that users may make the service connect to.

A user-supplied host must not reach the service's own network: loopback, private,
link-local, multicast, reserved and cloud metadata addresses are rejected unless
``Settings.allow_private_hosts`` allows them (development and tests). Cloud metadata
addresses stay rejected even then, because no IMAP server lives there. The API checks when an
account is connected, and the worker checks again on the address it connects to, because a
DNS answer can change in between.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata services.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, Google Cloud, Azure and others
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)


def parse_ip(text: str) -> IPAddress | None:
    """Return ``text`` as an IP address, or None when it is not one."""
    try:
        # A scope suffix (fe80::1%eth0) is not part of the address itself.
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def is_public(address: IPAddress) -> bool:
    """Tell whether ``address`` is a global unicast address outside the metadata services."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES or address.is_multicast:
        return False
    return address.is_global


def resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve ``host`` to its TCP addresses, in the resolver's order; blocks.

    Raises OSError (``socket.gaierror``) when the name cannot be resolved.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [parse_ip(str(info[4][0])) for info in infos]
    return [address for address in addresses if address is not None]


def is_metadata(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in METADATA_ADDRESSES


def first_rejected(addresses: list[IPAddress], *, allow_private: bool = False) -> IPAddress | None:
    """Return the first address not allowed, or None when all are.

    With ``allow_private`` only cloud metadata addresses are rejected.
    """
    if allow_private:
        return next((address for address in addresses if is_metadata(address)), None)
    return next((address for address in addresses if not is_public(address)), None)
