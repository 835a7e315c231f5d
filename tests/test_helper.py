"""The shared helper's pure functions: the derived values of SPEC §1 and the small parsers every sink relies on."""

import hashlib
import io
import json
import sys
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ROOT, fixture, load_script

sys.path.insert(0, str(ROOT / "lib"))
import peepshow_sink as sink  # noqa: E402


@pytest.mark.parametrize(
    ("output_dir", "run_id"),
    [
        ("/tmp/peepshow-7f3kq2", "peepshow-7f3kq2"),
        ("/tmp/peepshow-7f3kq2/", "peepshow-7f3kq2"),
        ("/tmp/peepshow-7f3kq2//", "peepshow-7f3kq2"),
        ("C:\\Users\\ana\\Temp\\peepshow-x\\", "peepshow-x"),
        ("relative/dir", "dir"),
        ("single", "single"),
    ],
)
def test_run_id_is_the_basename_of_output_dir(output_dir, run_id):
    assert sink.derive({"outputDir": output_dir, "runId": "ignored"}, {}).run_id == run_id


@pytest.mark.parametrize("output_dir", [None, "", "/", "\\\\"])
def test_run_id_falls_back_to_the_manifest_run_id(output_dir):
    assert sink.derive({"outputDir": output_dir, "runId": "20261120T091403123-7f3kq2"}, {}).run_id == (
        "20261120T091403123-7f3kq2"
    )
    with pytest.raises(sink.SinkError) as failure:
        sink.derive({"outputDir": output_dir}, {})
    assert failure.value.code == 4


def test_title_fallbacks():
    base = {"outputDir": "/tmp/run-1"}
    assert sink.derive(dict(base, video={"tags": {"title": "T", "show": "S"}}), {}).title == "T"
    assert sink.derive(dict(base, video={"tags": {"title": " ", "show": "S"}}), {}).title == "S"
    assert sink.derive(dict(base, input={"filename": "clip.mov"}), {}).title == "clip.mov"
    assert sink.derive(base, {}).title == "run-1"
    assert sink.derive(fixture("manifest.json"), {}).title == "checkout-flicker.mov"


def test_derived_values_of_the_full_fixture():
    row = sink.derive(fixture("run-full.json"), {"PEEPSHOW_FRAME_BASE_URL": "https://cdn.example.com/frames/"}, now=0)
    assert row.frames == 3 and row.duration == 42.0 and row.strategy == "scene"
    assert row.thumbnail_url == "https://cdn.example.com/frames/frame_0001.jpg"
    assert row.created_at == "1970-01-01T00:00:00.000Z"
    assert json.loads(row.tags)["director"] == "QA Team"
    assert row.transcript.startswith("Okay, I'm on the checkout screen.")


def test_thumbnail_url_percent_encodes_the_file_name():
    row = sink.derive(fixture("run-hostile.json"), {"PEEPSHOW_FRAME_BASE_URL": "https://cdn.example.com"})
    assert row.thumbnail_url == "https://cdn.example.com/frame%200001%20%C3%BC%23%3F.jpg"
    assert sink.derive(fixture("run-hostile.json"), {}).thumbnail_url is None
    assert (
        sink.derive({"outputDir": "/x", "frames": []}, {"PEEPSHOW_FRAME_BASE_URL": "https://c"}).thumbnail_url is None
    )


def test_strategy_falls_back_to_extraction_and_tags_default_to_an_empty_object():
    row = sink.derive({"outputDir": "/x", "extraction": {"strategy": "fps"}}, {})
    assert row.strategy == "fps" and row.tags == "{}" and row.transcript is None and row.duration is None


def test_transcript_is_cut_to_1_mib_on_a_character_boundary():
    text = "é" * (sink.TRANSCRIPT_LIMIT // 2 + 10)  # two bytes each: the limit falls inside nothing, then inside one
    cut = sink.derive({"outputDir": "/x", "audio": {"transcript": {"text": "a" + text}}}, {}).transcript
    assert len(cut.encode("utf-8")) <= sink.TRANSCRIPT_LIMIT
    assert cut.encode("utf-8").decode("utf-8") == cut
    assert len(cut.encode("utf-8")) >= sink.TRANSCRIPT_LIMIT - 1


@given(st.text(), st.integers(min_value=0, max_value=64))
def test_cut_utf8_never_splits_a_character(value, limit):
    cut = sink.cut_utf8(value, limit)
    assert len(cut.encode("utf-8")) <= limit
    assert value.startswith(cut)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T09:14:03.123Z", "2026-11-20T09:14:03.123Z"),
        ("2026-11-20T09:14:03Z", "2026-11-20T09:14:03.000Z"),
        ("2026-11-20T09:14:03.123456789Z", "2026-11-20T09:14:03.123Z"),
        ("2026-11-20T10:14:03.5+01:00", "2026-11-20T09:14:03.500Z"),
        ("2026-11-20 09:14:03.1", "2026-11-20T09:14:03.100Z"),
    ],
)
def test_created_at_from_the_payload_is_normalised(value, expected):
    assert sink.derive({"outputDir": "/x", "createdAt": value}, {}).created_at == expected


@pytest.mark.parametrize("value", ["2026-02-30T00:00:00Z", "yesterday", 1763630043, None])
def test_an_unusable_created_at_means_now(value):
    assert sink.derive({"outputDir": "/x", "createdAt": value}, {}, now=86400.25).created_at == (
        "1970-01-02T00:00:00.250Z"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (2.5, 2.5), ("12.5", 12.5), (" 3 ", 3), ("1e3", 1000.0), (True, None), ("NaN", None), ("inf", None)],
)
def test_numbers_from_numbers_and_numeric_strings(value, expected):
    assert sink.number(value) == expected


def test_lone_surrogates_become_replacement_characters():
    row = sink.derive(json.loads('{"outputDir": "/x", "video": {"tags": {"title": "a\\ud83db"}}}'), {})
    assert row.title == "a\ufffdb"
    row.tags.encode("utf-8")


def test_documents_concatenated_one_per_line_or_with_a_bom():
    stream = io.BytesIO(b'\xef\xbb\xbf{"a": 1}{"b": 2}\n{"c": [3]}\n\n')
    assert list(sink.iter_documents(stream)) == [{"a": 1}, {"b": 2}, {"c": [3]}]


def test_a_document_larger_than_one_read_chunk():
    big = {"outputDir": "/x", "text": "z" * (sink.READ_CHUNK * 2 + 7)}
    stream = io.BytesIO((json.dumps(big) + "\n" + json.dumps({"n": 2})).encode())
    assert [document.get("n") for document in sink.iter_documents(stream)] == [None, 2]


def test_a_utf8_character_split_across_reads():
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.data = data

        def read(self, size=-1):
            chunk, self.data = self.data[:1], self.data[1:]
            return chunk

    assert list(sink.iter_documents(Trickle('{"t": "ü🎬"}'.encode()))) == [{"t": "ü🎬"}]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("api.localhost", True),
        ("[::1]", True),
        ("127.0.0.1.attacker.example", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_loopback_is_decided_by_address(host, loopback):
    assert sink.is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("api.segment.io", 443, "segment.io", True),
        ("api.segment.io", 443, ".segment.io", True),
        ("api.segment.io", 443, "io.example", False),
        ("127.0.0.1", 8080, "127.0.0.1:8080", True),
        ("127.0.0.1", 8081, "127.0.0.1:8080", False),
        ("anything", 1, "*", True),
        ("notsegment.io", 443, "segment.io", False),
    ],
)
def test_no_proxy_matching(host, port, no_proxy, bypass):
    assert sink._bypass_proxy(host, port, no_proxy) is bypass


def test_stable_ids_are_uuid5_shaped_and_deterministic():
    first = load_script("event-track").stable_id("peepshow-run", "peepshow-7f3kq2", "2026-11-20T09:14:03.123Z")
    assert first == load_script("event-track").stable_id("peepshow-run", "peepshow-7f3kq2", "2026-11-20T09:14:03.123Z")
    assert uuid.UUID(first).version == 5 and len(first) == 36
    assert first != load_script("event-track").stable_id("peepshow-run", "peepshow-7f3kq2", "2026-11-20T09:14:03.124Z")


def test_digests_match_hashlib_without_loading_it():
    assert sink.digest("sha256", b"peepshow") == hashlib.sha256(b"peepshow").digest()
    assert sink.digest("sha1", b"peepshow") == hashlib.sha1(b"peepshow").digest()  # noqa: S324


def test_redact_hides_the_secret_and_its_encodings():
    sink.register_secret("s3cr3t/token+1")
    shown = sink.redact("raw s3cr3t/token+1 url s3cr3t%2Ftoken%2B1 basic czNjcjN0L3Rva2VuKzE6")
    assert "s3cr3t" not in shown and "czNjcjN0L3Rva2VuKzE6" not in shown


def test_unknown_option_and_bad_timeout_are_usage_errors():
    with pytest.raises(sink.SinkError) as failure:
        sink.parse_args(["--frobnicate"])
    assert failure.value.code == 2
    for value in ("0", "-1", "soon", "9999"):
        with pytest.raises(sink.SinkError):
            sink.read_timeout({"PEEPSHOW_SINK_TIMEOUT": value})
    assert sink.read_timeout({"PEEPSHOW_SINK_TIMEOUT": " "}) == sink.DEFAULT_TIMEOUT
    assert sink.parse_args(["--from-index"]).from_index.endswith("index.ndjson")
    options = sink.parse_args(["--from-index=/x.ndjson", "a.json"])
    assert (options.paths, options.from_index, [flag for flag in options.FLAGS if getattr(options, flag)]) == (
        ["a.json"],
        "/x.ndjson",
        [],
    )


def test_the_fixtures_are_the_shared_ones():
    # tests/fixtures is a copy so a clone tests on its own; beside the shared folder, the copy must not drift.
    shared = ROOT.parent / "shared" / "fixtures"
    if not shared.is_dir():
        pytest.skip("no shared/ folder beside this checkout")
    names = sorted(path.name for path in shared.glob("*.json"))
    assert names == sorted(path.name for path in (ROOT / "tests" / "fixtures").glob("*.json"))
    for name in names:
        assert (shared / name).read_bytes() == (ROOT / "tests" / "fixtures" / name).read_bytes(), name


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [("3", 3, 3), ("0", 0, 0), ("garbage", None, None), ("-5", None, None)],
)
def test_retry_after_in_seconds(value, low, high):
    urllib3 = sink.load_urllib3()
    wait = sink._retry_after(urllib3, sink.Response(429, {"Retry-After": value}, b""))
    assert (wait is None) if low is None else low <= wait <= high


def test_retry_after_as_an_http_date():
    import email.utils
    import time

    urllib3 = sink.load_urllib3()
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    wait = sink._retry_after(urllib3, sink.Response(503, {"Retry-After": when}, b""))
    assert 3 <= wait <= 5
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert sink._retry_after(urllib3, sink.Response(503, {"Retry-After": past}, b"")) == 0


def test_a_row_keeps_the_cut_transcript_and_no_segments():
    payload = fixture("run-full.json")
    payload["audio"]["transcript"]["text"] = "x" * (sink.TRANSCRIPT_LIMIT + 10)
    row = sink.derive(payload, {})
    kept = row.payload["audio"]["transcript"]
    assert "segments" not in kept and kept["language"] == "en" and kept["text"] is row.transcript
    assert len(row.transcript) == sink.TRANSCRIPT_LIMIT
    assert "segments" in payload["audio"]["transcript"]  # the caller's document is not modified
    assert sink.derive(row.payload, {}).transcript == row.transcript  # a replay derives the same row


def test_base_urls_drop_query_and_fragment_endpoints_keep_the_query():
    env = {"URL": "https://adb-1.azuredatabricks.net/?o=123#x", "ENDPOINT": "https://mock.example/track?x=1/"}
    assert sink.base_url(env, "URL", "hint") == "https://adb-1.azuredatabricks.net"
    assert sink.base_url(env, "ENDPOINT", "hint", keep_query=True) == "https://mock.example/track?x=1"
    with pytest.raises(sink.SinkError):
        sink.base_url({"URL": "ftp://example.com"}, "URL", "hint")


@pytest.mark.parametrize(("value", "stored"), [(None, 0.0), (42, 42.0), (12.5, 12.5), (10**400, 0.0)])
def test_tables_store_0_for_an_unknown_duration(value, stored):
    assert sink.table_duration(value) == stored


# -- what every sink's delivery shares -------------------------------------------------------------------------------


def test_chunked_by_count_and_bytes():
    assert list(sink.chunked([1, 1, 1, 1, 1], 2, 100)) == [[0, 1], [2, 3], [4]]
    assert list(sink.chunked([60, 50, 10, 200, 5], 10, 100)) == [[0], [1, 2], [3], [4]]
    assert list(sink.chunked([], 2, 10)) == []


def test_deliver_each_stops_at_the_first_failure_that_is_not_a_refusal():
    requests = [sink.request("POST", f"u{number}", rows=[2 * number, 2 * number + 1]) for number in range(4)]
    refused = sink.remote_error("refused", refused=True)
    down = sink.remote_error("down", transient=True)
    sent = []

    def send_one(req):
        sent.append(req.url)
        if req.url == "u0":
            return [None, refused]
        if req.url == "u1":
            raise down
        return [None, None]

    outcomes = sink.deliver_each(requests, 8, send_one)
    assert sent == ["u0", "u1"]
    assert outcomes == [None, refused, down, down, down, down, down, down]


def test_deliver_each_sends_every_request_when_nothing_stops_it_concurrently():
    requests = [sink.request("POST", f"u{number}", rows=[number]) for number in range(20)]
    outcomes = sink.deliver_each(requests, 20, lambda req: [None], concurrency=5)
    assert outcomes == [None] * 20


def test_create_once_creates_once_and_shares_its_failure():
    made = []
    once = sink.CreateOnce(lambda ctx, name: made.append(name))
    once.ensure(None, "t")
    once.ensure(None, "t")
    assert made == ["t"] and once.created

    def refuse(ctx):
        made.append("again")
        raise sink.remote_error("no permission")

    failing = sink.CreateOnce(refuse)
    for _ in range(2):
        with pytest.raises(sink.SinkError):
            failing.ensure(None)
    assert made == ["t", "again"] and not failing.created


def test_column_problems_words_each_difference_in_the_sinks_terms():
    columns = (("a", "text"), ("b", "bigint"), ("c", "double"))
    found = {"a": "text", "b": "int", "x": "text"}
    problems = sink.column_problems(
        columns,
        found,
        missing=lambda name, kind: f"{name} missing",
        retyped=lambda name, kind, column: None if column == kind else f"{name} is {column}",
        extra=lambda name, column: f"{name} extra",
    )
    assert problems == ["b is int", "c missing", "x extra"]
