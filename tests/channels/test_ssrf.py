"""The SSRF guard: internal addresses are refused unless the deployment allows them by name."""

from __future__ import annotations

import socket

import pytest

from connectors.webhook.ssrf import Refused, Unresolved, check_url, parse_allow_list

NOBODY = parse_allow_list([])


def resolver(*addresses: str):
    """A resolver answering `addresses` for any host (what a DNS server could say)."""
    def resolve(host, port, type=0):
        family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]
    return resolve


@pytest.mark.parametrize(("url", "word"), [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://localhost:8080/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.5/hook", "private"),
    ("http://192.168.1.10/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://[::1]/hook", "loopback"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://100.64.0.1/hook", "non-public"),
    ("http://240.0.0.1/hook", "reserved"),
])
def test_internal_addresses_are_refused_with_the_reason(url, word):
    with pytest.raises(Refused) as caught:
        check_url(url, allow=NOBODY)
    assert word in str(caught.value) and "allow_hosts" in str(caught.value)


def test_a_public_name_resolving_to_an_internal_address_is_refused():
    # DNS can point any name anywhere: the address decides, not the name.
    with pytest.raises(Refused, match="link-local address 169.254.169.254"):
        check_url("https://hooks.example.com/x", allow=NOBODY, resolve=resolver("169.254.169.254"))


def test_one_internal_address_among_several_is_enough_to_refuse():
    with pytest.raises(Refused, match="private"):
        check_url("https://hooks.example.com/x", allow=NOBODY, resolve=resolver("93.184.215.14", "10.1.2.3"))


def test_a_public_address_passes_and_the_vetted_address_is_the_one_to_connect_to():
    target = check_url("https://hooks.example.com:8443/x?y=1", allow=NOBODY, resolve=resolver("93.184.215.14"))
    assert (target.address, target.host, target.port, target.path, target.host_header) == (
        "93.184.215.14", "hooks.example.com", 8443, "/x?y=1", "hooks.example.com:8443")


@pytest.mark.parametrize("entry", ["127.0.0.1", "LOCALHOST", "127.0.0.0/8"])
def test_the_allow_list_admits_a_host_by_name_or_range(entry):
    url = "http://localhost:9/hook" if entry.lower() == "localhost" else "http://127.0.0.1:9/hook"
    target = check_url(url, allow=parse_allow_list([entry]), resolve=resolver("127.0.0.1"))
    assert target.address == "127.0.0.1"


def test_allowing_one_internal_host_does_not_allow_another():
    allow = parse_allow_list(["127.0.0.1"])
    with pytest.raises(Refused, match="link-local"):
        check_url("http://169.254.169.254/", allow=allow)
    # Another spelling of loopback is another name: not allowed by "127.0.0.1".
    with pytest.raises(Refused, match="loopback"):
        check_url("http://internal.test/", allow=allow, resolve=resolver("127.0.0.2"))


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://hooks.example.com/x", "must be http or https"),
    ("file:///etc/passwd", "must be http or https"),
    ("https://user:pw@hooks.example.com/", "must not carry credentials"),
    ("https:///nohost", "has no host"),
    ("http://hooks.example.com:99999/", "not a valid URL"),
])
def test_urls_that_are_not_plain_http_are_refused(url, message):
    with pytest.raises(Refused, match=message):
        check_url(url, allow=NOBODY, resolve=resolver("93.184.215.14"))


def test_a_host_that_does_not_resolve_is_unresolved_which_may_be_retried():
    def failing(host, port, type=0):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    with pytest.raises(Unresolved):
        check_url("https://hooks.example.com/", allow=NOBODY, resolve=failing)
