"""Coverage-guided fuzzing of the PROXY protocol header parser with atheris.

The first input byte picks how many bytes each read asks for (as a server
would, never more than ``want``); the rest is the connection's stream. The
parser must either return a header that ends exactly where it stopped
reading, or raise ``ProxyHeaderError``; nothing else, and never a read past
its caps.

    python fuzz/fuzz_proxyheader.py -max_total_time=600   # a long run
    python fuzz/fuzz_proxyheader.py -runs=20000           # a short one (CI)
"""

from __future__ import annotations

import ipaddress
import sys

import atheris

with atheris.instrument_imports():
    from fileferry.protocol.proxyheader import V1_MAX, ProxyHeaderError, ProxyHeaderParser

CAP = 512


def test_one_input(data: bytes) -> None:
    if not data:
        return
    step, stream = data[0] % 32 + 1, data[1:]
    parser = ProxyHeaderParser(CAP)
    pos = 0
    try:
        while True:
            want = parser.want
            assert want > 0
            chunk = stream[pos : pos + min(step, want)]
            pos += len(chunk)
            header = parser.feed(chunk)
            if header is not None:
                break
    except ProxyHeaderError:
        assert pos <= max(CAP, V1_MAX)
        return
    assert header.length == pos <= max(CAP, V1_MAX)
    if header.source is not None:
        ipaddress.ip_address(header.source[0])
        assert 0 <= header.source[1] <= 65535


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
