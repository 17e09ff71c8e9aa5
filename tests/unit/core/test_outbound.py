from __future__ import annotations

import pytest

from services.core.errors import OutboundRefusedError
from services.core.outbound import check_target


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
    ],
)
async def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(OutboundRefusedError, match="non-public"):
        await check_target(url, allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost"])
async def test_other_schemes_are_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(OutboundRefusedError, match="http"):
        await check_target(url, allow_private=True)


async def test_public_addresses_pass() -> None:
    await check_target("https://8.8.8.8/hook", allow_private=False)


async def test_the_operator_may_allow_private_targets() -> None:
    await check_target("http://127.0.0.1:9000/hook", allow_private=True)
