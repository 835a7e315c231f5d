"""Networks and security, as users meet them: proxies, private CAs, redirects, plain http, stalling servers.

Everything runs the built event-track zipapp against emulators and a proxy on 127.0.0.1 (Segment, whose single
call is one POST: easy to count). HTTPS uses a throwaway self-signed certificate made by the `openssl` CLI.
"""

import pytest

from tests.conftest import TOKENS, assert_clean_failure, fixture_bytes, self_signed_certificate
from tests.emulators.segment import Segment
from tests.proxy import Proxy

TOKEN = TOKENS["segment"]
RUN = fixture_bytes("run-full.json")
# The hard bound of SPEC §1 under test, and the slack allowed on top of it: interpreter start-up and exit.
TIMEOUT = 2
SLACK = 2
# For failures whose timing is not the point: short, so the file stays quick.
SHORT = "1"


# -- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """(certfile, keyfile): self-signed for localhost and 127.0.0.1, no CA; what a private endpoint looks like."""
    directory = tmp_path_factory.mktemp("tls")
    return self_signed_certificate(directory, "localhost", ["IP:127.0.0.1", "DNS:localhost"])


@pytest.fixture(scope="session")
def tls_segment_server(certificate):
    emulator = Segment().start(tls=certificate)
    yield emulator
    emulator.stop()


@pytest.fixture
def tls_segment(tls_segment_server):
    tls_segment_server.reset()
    return tls_segment_server


@pytest.fixture
def proxy():
    with Proxy() as running:
        yield running


@pytest.fixture(scope="module")
def elsewhere_server():
    with Segment() as running:
        yield running


@pytest.fixture
def elsewhere(elsewhere_server):
    """A second Segment: the host a redirect points to, which must never see the request."""
    elsewhere_server.reset()
    return elsewhere_server


def segment_env(emulator, **extra):
    env = {
        "EVENT_TRACK_PROVIDER": "segment",
        "EVENT_TRACK_TOKEN": TOKEN,
        "EVENT_TRACK_USER_ID": "peepshow-cli",
        "EVENT_TRACK_ENDPOINT": emulator.url + "/v1/track",
    }
    env.update(extra)
    return env


def host_port(emulator):
    return f"127.0.0.1:{emulator.port}"


# -- proxies -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_https_goes_through_the_proxy_as_a_tunnel(run_sink, tls_segment, proxy, certificate, variable):
    env = segment_env(tls_segment, SSL_CERT_FILE=certificate[0], **{variable: proxy.url})
    result = run_sink("event-track", RUN, env)
    assert result.code == 0, result
    assert result.stderr == ""
    # urllib3 (http.client) says HTTP/1.0 in CONNECT lines; the version is not the point.
    assert [line.rsplit(" ", 1)[0] for line in proxy.seen] == [f"CONNECT {host_port(tls_segment)}"]
    # The write key travels inside the tunnel: the proxy never sees it.
    assert "authorization" not in proxy.headers[0]
    assert len(tls_segment.events) == 1


def test_http_goes_through_the_proxy_as_an_absolute_uri(run_sink, analytics, proxy):
    emulator, env = analytics("segment", HTTP_PROXY=proxy.url)
    result = run_sink("event-track", RUN, env)
    assert result.code == 0, result
    assert proxy.seen == [f"POST {emulator.url}/v1/track HTTP/1.1"]
    assert len(emulator.events) == 1


@pytest.mark.parametrize("no_proxy", ["NO_PROXY", "no_proxy"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_no_proxy_bypasses_the_proxy(run_sink, segment, tls_segment, proxy, certificate, scheme, no_proxy):
    emulator = tls_segment if scheme == "https" else segment
    env = segment_env(emulator, SSL_CERT_FILE=certificate[0], HTTP_PROXY=proxy.url, HTTPS_PROXY=proxy.url)
    env[no_proxy] = "127.0.0.1"
    result = run_sink("event-track", RUN, env)
    assert result.code == 0, result
    assert proxy.seen == []
    assert len(emulator.events) == 1


def test_the_https_proxy_is_not_used_for_http(run_sink, analytics, proxy):
    # Each scheme has its own variable (curl, requests, urllib agree): HTTPS_PROXY alone leaves http direct.
    emulator, env = analytics("segment", HTTPS_PROXY=proxy.url)
    assert run_sink("event-track", RUN, env).code == 0
    assert proxy.seen == []
    assert len(emulator.events) == 1


def test_a_dead_proxy_is_named(run_sink, tls_segment, certificate, unused_port):
    # "cannot connect to Segment" would send the user to check the wrong thing.
    env = segment_env(
        tls_segment,
        SSL_CERT_FILE=certificate[0],
        HTTPS_PROXY=f"http://127.0.0.1:{unused_port}",
        PEEPSHOW_SINK_TIMEOUT=SHORT,
    )
    result = run_sink("event-track", RUN, env)
    assert_clean_failure(result, 5, TOKEN)
    assert "HTTPS_PROXY" in result.stderr


@pytest.mark.parametrize("password", ["proxy-pass-1234", "wrong-pass-5678"])
def test_proxy_credentials_in_the_proxy_url(run_sink, tls_segment, certificate, password):
    # urllib3 ignores user:password in a proxy URL; corporate proxies need them as Proxy-Authorization. A refused
    # one (407) is a failure whose message, like every other, must not show the password.
    with Proxy(auth=("alice", "proxy-pass-1234")) as guarded:
        env = segment_env(
            tls_segment,
            SSL_CERT_FILE=certificate[0],
            HTTPS_PROXY=f"http://alice:{password}@127.0.0.1:{guarded.port}",
            PEEPSHOW_SINK_TIMEOUT=SHORT,
        )
        result = run_sink("event-track", RUN, env)
    if password == "proxy-pass-1234":
        assert result.code == 0, result
        assert result.stderr == ""
        assert guarded.headers[0]["proxy-authorization"] == "Basic YWxpY2U6cHJveHktcGFzcy0xMjM0"
        assert len(tls_segment.events) == 1
    else:
        assert_clean_failure(result, 5, TOKEN, password)
        assert "proxy" in result.stderr.lower()
        assert tls_segment.events == []


def test_wrong_proxy_credentials_are_not_retried(run_sink, tls_segment, certificate):
    with Proxy(auth=("alice", "proxy-pass-1234")) as guarded:
        env = segment_env(
            tls_segment,
            SSL_CERT_FILE=certificate[0],
            HTTPS_PROXY=f"http://alice:wrong-pass-5678@127.0.0.1:{guarded.port}",
            PEEPSHOW_SINK_TIMEOUT=SHORT,
        )
        result = run_sink("event-track", RUN, env)
    assert_clean_failure(result, 5, TOKEN, "wrong-pass-5678")
    assert len(guarded.seen) == 1, guarded.seen


def test_an_unsupported_proxy_scheme_is_a_configuration_error(run_sink, tls_segment, certificate):
    # urllib3 raises ProxySchemeUnknown for socks5://: a setting to fix (exit 2), not an "internal error".
    env = segment_env(tls_segment, SSL_CERT_FILE=certificate[0], HTTPS_PROXY="socks5://127.0.0.1:1080")
    result = run_sink("event-track", RUN, env)
    assert_clean_failure(result, 2, TOKEN)
    assert "HTTPS_PROXY" in result.stderr


# -- TLS -----------------------------------------------------------------------------------------------------------


def test_a_private_ca_needs_ssl_cert_file(run_sink, tls_segment):
    env = segment_env(tls_segment, PEEPSHOW_SINK_TIMEOUT=SHORT)
    result = run_sink("event-track", RUN, env)
    assert_clean_failure(result, 5, TOKEN)
    assert "TLS" in result.stderr
    assert "SSL_CERT_FILE" in result.stderr
    assert tls_segment.events == []


def test_ssl_cert_file_trusts_the_private_certificate(run_sink, tls_segment, certificate):
    result = run_sink("event-track", RUN, segment_env(tls_segment, SSL_CERT_FILE=certificate[0]))
    assert result.code == 0, result
    assert result.stderr == ""
    assert len(tls_segment.events) == 1


def test_a_certificate_failure_is_not_retried(run_sink, tls_segment, proxy):
    # The same certificate fails the same way on every attempt: retrying only spends the user's timeout.
    # Counted through the proxy, one CONNECT per attempt: timing would depend on the retry jitter.
    env = segment_env(tls_segment, HTTPS_PROXY=proxy.url, PEEPSHOW_SINK_TIMEOUT=SHORT)
    result = run_sink("event-track", RUN, env)
    assert_clean_failure(result, 5, TOKEN)
    assert len(proxy.seen) == 1, proxy.seen


# -- redirects and plain http --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed(run_sink, analytics, elsewhere, status):
    emulator, env = analytics("segment")
    location = elsewhere.url + "/v1/track"
    emulator.fault("status", status=status, headers={"Location": location})
    result = run_sink("event-track", RUN, env)
    assert_clean_failure(result, 5, TOKEN)
    assert location in result.stderr
    assert "EVENT_TRACK_ENDPOINT" in result.stderr
    # Following it would carry the write key to another host.
    assert elsewhere.requests == []
    assert len(emulator.requests) == 1


@pytest.mark.parametrize(
    "host",
    ["analytics.example.com", "10.1.2.3", "[2001:db8::1]", "localhost.example.com", "192.168.1.10:8080"],
)
def test_plain_http_with_a_credential_is_refused_before_any_network(run_sink, proxy, host):
    # Both proxy variables point at the recording proxy: any attempt to reach the host would show up there.
    env = {
        "EVENT_TRACK_PROVIDER": "segment",
        "EVENT_TRACK_TOKEN": TOKEN,
        "EVENT_TRACK_USER_ID": "peepshow-cli",
        "EVENT_TRACK_ENDPOINT": f"http://{host}/v1/track",
        "HTTP_PROXY": proxy.url,
        "HTTPS_PROXY": proxy.url,
    }
    result = run_sink("event-track", RUN, env)
    assert_clean_failure(result, 2, TOKEN)
    assert "https" in result.stderr
    assert proxy.seen == []


def test_a_dns_name_that_looks_like_loopback_is_not_loopback(run_sink, proxy):
    # Whoever owns attacker.example decides where this name points: only a real loopback address or localhost
    # may get a credential over plain http.
    env = {
        "EVENT_TRACK_PROVIDER": "segment",
        "EVENT_TRACK_TOKEN": TOKEN,
        "EVENT_TRACK_USER_ID": "peepshow-cli",
        "EVENT_TRACK_ENDPOINT": "http://127.0.0.1.attacker.example/v1/track",
        "HTTP_PROXY": proxy.url,
        "PEEPSHOW_SINK_TIMEOUT": SHORT,
    }
    result = run_sink("event-track", RUN, env)
    assert proxy.seen == []
    assert_clean_failure(result, 2, TOKEN)


# -- servers that stall --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["trickle", "hang"])
def test_a_stalling_server_cannot_hold_the_sink_past_its_timeout(run_sink, analytics, kind):
    emulator, env = analytics("segment", PEEPSHOW_SINK_TIMEOUT=str(TIMEOUT))
    # Every attempt stalls, retries included: only the overall deadline can end the run.
    emulator.fault(kind, times=None, interval=0.2)
    result = run_sink("event-track", RUN, env, timeout=TIMEOUT + 20)
    assert_clean_failure(result, 5, TOKEN)
    assert result.elapsed < TIMEOUT + SLACK, result
    assert "time" in result.stderr.lower()


def test_a_timeout_names_the_variable_that_sets_it(run_sink, analytics):
    # The failure line names its fix (SPEC §1): here the variable that allows more time.
    emulator, env = analytics("segment", PEEPSHOW_SINK_TIMEOUT=SHORT)
    emulator.fault("hang", times=None)
    result = run_sink("event-track", RUN, env)
    assert_clean_failure(result, 5, TOKEN)
    assert "PEEPSHOW_SINK_TIMEOUT" in result.stderr


def test_a_stalling_server_behind_the_proxy_cannot_hold_the_sink(run_sink, tls_segment, proxy, certificate):
    env = segment_env(tls_segment, SSL_CERT_FILE=certificate[0], HTTPS_PROXY=proxy.url, PEEPSHOW_SINK_TIMEOUT=SHORT)
    tls_segment.fault("hang", times=None)
    result = run_sink("event-track", RUN, env, timeout=TIMEOUT + 20)
    assert_clean_failure(result, 5, TOKEN)
    assert result.elapsed < float(SHORT) + SLACK, result
    assert proxy.seen and all(line.startswith("CONNECT ") for line in proxy.seen)
