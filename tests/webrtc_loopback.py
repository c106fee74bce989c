"""Two aiortc peers in one process on 127.0.0.1: ICE host candidates on the
loopback interface only, no STUN or TURN, SDP handed over in process.

aiortc offers no option to choose the interfaces ICE gathers on, and aioice
leaves 127.0.0.1 out of its host addresses, so the tests replace aioice's
interface enumeration (``aioice.ice.get_host_addresses``) with loopback alone.
"""

from __future__ import annotations

import re


def loopback_ice(monkeypatch) -> None:
    """Make ICE gather host candidates on 127.0.0.1 and nowhere else."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def candidate_hosts(sdp: str) -> set[str]:
    """The addresses of the ICE candidates an SDP carries."""
    return {m.group(1) for m in re.finditer(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+", sdp, re.M)}


async def connect_peers(offerer, answerer) -> None:
    """Offer from ``offerer``, answer from ``answerer`` (aiortc gathers every
    candidate before setLocalDescription returns), and check that both sides
    offered loopback candidates only."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    for pc in (offerer, answerer):
        hosts = candidate_hosts(pc.localDescription.sdp)
        assert hosts == {"127.0.0.1"}, hosts
