"""Which callback URLs the ingest takes: http(s) to a public address or a name."""

from __future__ import annotations

import pytest

from services.ingest.callbacks import MAX_URL, url_problem


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/pushline",
        "http://hooks.example.com:8080/p?x=1",
        "HTTPS://Hooks.Example.com/",
        "https://93.184.215.14/hook",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook",
    ],
)
def test_public_http_urls_are_taken(url: str) -> None:
    assert url_problem(url, allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.com/x", "http(s) URL"),
        ("hooks.example.com/x", "http(s) URL"),
        ("https:///x", "http(s) URL"),
        ("https://[::1/x", "http(s) URL"),
        ("https://hooks.example.com:99999/x", "http(s) URL"),
        ("http://127.0.0.1:8080/hook", "non-public address 127.0.0.1"),
        ("http://10.1.2.3/hook", "non-public address"),
        ("http://169.254.169.254/latest/meta-data", "non-public address"),
        ("http://[::1]/hook", "non-public address ::1"),
        ("http://[::ffff:192.168.0.1]/hook", "non-public address"),
        ("http://localhost:8080/hook", "this machine"),
        ("http://api.localhost/hook", "this machine"),
        ("https://x.example.com/" + "a" * MAX_URL, "too long"),
    ],
)
def test_other_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    problem = url_problem(url, allow_private=False)
    assert problem is not None
    assert why in problem


def test_the_operator_may_allow_private_addresses() -> None:
    assert url_problem("http://127.0.0.1:8080/hook", allow_private=True) is None
    assert url_problem("ftp://127.0.0.1/hook", allow_private=True) is not None
