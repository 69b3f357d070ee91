"""A quick answer to "could a download reach this URL from here?".

tensorflow-datasets retries a failed download for minutes before giving up (about 3.5
minutes for CIFAR-10 with tfds 4.9.10). Compute nodes of clusters often have no network,
so ``bnno.data`` asks this module first and fails within seconds instead.

Tests replace :func:`can_reach` (``monkeypatch.setattr(network, "can_reach", ...)``);
callers look it up through the module for that reason.
"""

import socket
import threading
import urllib.parse
import urllib.request
from typing import Tuple

#: Seconds to wait for a TCP connection (name resolution included).
TIMEOUT_SECONDS = 3.0

#: Probed when a data set does not say where it downloads from: tfds first tries its
#: own mirror on Google Cloud Storage.
FALLBACK_URL = "https://storage.googleapis.com/tfds-data"


def can_reach(url: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    """Whether a TCP connection to the host of ``url`` (or to the proxy that
    ``HTTPS_PROXY``/``HTTP_PROXY`` name for it) opens within ``timeout`` seconds."""
    host, port = connection_target(url)
    reached = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            reached.append(True)
        except OSError:
            pass

    # Name resolution ignores socket timeouts and can hang for the resolver's own
    # timeout (often several retries of 5 s); a daemon thread bounds the whole probe.
    thread = threading.Thread(target=connect, name="bnno-network-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reached)


def connection_target(url: str) -> Tuple[str, int]:
    """The (host, port) a download of ``url`` connects to first: its proxy if one is
    configured for it, else its own host."""
    parsed = urllib.parse.urlparse(url)
    scheme = parsed.scheme or "https"
    host = parsed.hostname or ""
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return proxy_url.hostname or "", proxy_url.port or 80
    return host, parsed.port or (443 if scheme == "https" else 80)
