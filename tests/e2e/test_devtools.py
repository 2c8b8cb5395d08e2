"""The prototyping loop: test-read's trace (text and --json), its limits, --infer-schema, --debug
on every command, --record/--replay and the catalog command, against the GitHub and Polygon
stand-ins. No line of any of it may hold a secret."""

from __future__ import annotations

import json
import shutil

from .conftest import CANARY, REPO, assert_no_secret, utc
from .test_github import TOKEN, config, gh, github  # noqa: F401  (fixtures)

GITHUB = REPO / "scripts" / "examples" / "github_issues.lua"
NOW = utc(2024, 7, 1)


def test_read(gh, github, *flags, **fields):
    return gh.run("--script", GITHUB, "test-read", "--config", gh.file("config.json", config(github, **fields)),
                  *flags, now=NOW, protocol=False)


test_read.__test__ = False


def events(result) -> list:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_trace_shows_partitions_requests_answers_pages_records_checkpoints_and_a_summary(gh, github):
    result = test_read(gh, github)
    assert result.returncode == 0, result.describe()
    out = result.stdout
    assert "== stream issues" in out
    assert "partition issues[octo/alpha]: 2024-03-01T00:00:00Z .. 2024-07-01T00:00:00Z" in out
    assert f"> [octo/alpha] GET {github.base_url}/repos/octo/alpha/issues?direction=asc" in out
    assert "Authorization: Bearer ****" in out
    assert "< [octo/alpha] HTTP 200 in " in out
    assert "page 1 of issues[octo/alpha]: 100 records parsed, 100 kept; next: " in out
    assert "page 2 of issues[octo/beta]: " in out and "no next page" in out
    # the records, under their page, as they were written
    assert sum(line.startswith('      {"') for line in out.splitlines()) > 100
    assert "  checkpoint issues: {" in out
    summary = [line for line in out.splitlines() if line.startswith("== issues: ")]
    assert len(summary) == 1 and "requests" in summary[0] and "(complete)" in summary[0], out[-2000:]
    assert TOKEN not in out


def test_json_lines_have_every_event_and_the_records(gh, github):
    result = test_read(gh, github, "--json")
    assert result.returncode == 0, result.describe()
    got = events(result)
    kinds = {e["event"] for e in got}
    assert {"stream", "partition", "request", "response", "page", "record", "checkpoint", "summary"} <= kinds
    records = [e["data"] for e in got if e["event"] == "record"]
    expected = sum(len(github.expected(r, "2024-03-01T00:00:00Z")) for r in ("octo/alpha", "octo/beta"))
    assert len(records) == expected
    [summary] = [e for e in got if e["event"] == "summary"]
    assert summary["records"] == expected and summary["status"] == "complete"
    assert summary["requests"] == sum(1 for e in got if e["event"] == "request")
    request = next(e for e in got if e["event"] == "request")
    assert request["method"] == "GET" and "Authorization: Bearer ****" in request["headers"]
    page = next(e for e in got if e["event"] == "page")
    assert page["kept"] == page["records"] and set(page["dropped"]) >= {"outside_window", "already_emitted"}


def test_max_records_stops_the_read_without_a_checkpoint_past_what_it_showed(gh, github):
    result = test_read(gh, github, "--json", "--max-records", "5", "--stream", "issues")
    got = events(result)
    assert result.returncode == 0, result.describe()
    assert sum(1 for e in got if e["event"] == "record") == 5
    [limit] = [e for e in got if e["event"] == "limit"]
    assert limit["limit"] == "max-records" and limit["value"] == 5
    after = got[got.index(limit):]
    assert not any(e["event"] == "checkpoint" for e in after)
    [summary] = [e for e in got if e["event"] == "summary"]
    assert summary["status"] == "stopped at a limit" and summary["records_not_shown"] == summary["records"] - 5


def test_max_pages_and_max_partitions(gh, github):
    got = events(test_read(gh, github, "--json", "--max-pages", "1"))
    assert sum(1 for e in got if e["event"] == "page") == 1
    got = events(test_read(gh, github, "--json", "--max-partitions", "1"))
    partitions = {e["partition"] for e in got if e["event"] == "partition"}
    assert partitions == {"octo/alpha"}
    assert any(e["event"] == "limit" and e["limit"] == "max-partitions" for e in got)
    # the partition begun was read to its end, with its checkpoint
    assert any(e["event"] == "checkpoint" for e in got)


def test_an_unknown_stream_is_named_with_the_closest(gh, github):
    result = test_read(gh, github, "--stream", "isues")
    assert result.returncode != 0
    assert "did you mean issues?" in result.stdout


def test_retries_and_warnings_are_in_the_trace(connector):
    connector.server.faults(fail_next=1, status=503, retry_after=0)
    result = connector.run("test-read", "--config", connector.file("config.json", connector.config()),
                           now=utc(2022, 3, 11, 22, 0), protocol=False)
    assert result.returncode == 0, result.describe()
    assert "< [TSLA] HTTP 503 in " in result.stdout
    assert "WARN HTTP 503" in result.stdout and "retry 1 in " in result.stdout
    assert "1 retries" in result.stdout
    assert CANARY not in result.stdout


def test_infer_schema_prints_a_schema_and_how_it_differs_from_the_declared_one(gh, github, tmp_path):
    text = GITHUB.read_text().replace("      comments = { type = \"integer\" },\n", "      comments = { type = \"string\" },\n"
                                      "      milestone = { type = \"string\" },\n")
    text = text.replace('  primary_key = "id",\n', '  primary_key = "id",\n  schema_check = "warn",\n')
    script = tmp_path / "gh.lua"
    script.write_text(text)
    result = gh.run("--script", script, "test-read", "--config", gh.file("config.json", config(github)), "--json",
                    "--infer-schema", "--max-pages", "1", "--stream", "issues", now=NOW, protocol=False)
    [inferred] = [e for e in events(result) if e["event"] == "inferred_schema"]
    props = inferred["schema"]["properties"]
    assert props["id"]["type"] == "integer" and props["updated_at"]["format"] == "date-time"
    assert props["closed_at"]["type"] == ["null", "string"]
    assert "comments: records hold integer, the schema says string" in inferred["differences"]
    assert "milestone: declared, in no record read" in inferred["differences"]
    page = next(e for e in events(result) if e["event"] == "page")
    assert page["schema_warnings"] == page["records"]


def test_debug_logs_each_request_and_answer_masked_in_every_command(gh, github):
    cfg = gh.file("config.json", config(github))
    check = gh.run("--script", GITHUB, "check", "--config", cfg, "--debug", now=NOW)
    debug = [m["log"]["message"] for m in check.of("LOG") if m["log"]["level"] == "DEBUG"]
    assert any(d.startswith(f"> GET {github.base_url}/repos/octo/alpha") and "Bearer ****" in d for d in debug)
    assert any(d.startswith("< HTTP 200 in ") for d in debug)
    catalog = gh.run("--script", GITHUB, "catalog", "--config", cfg, protocol=False).stdout
    read = gh.run("--script", GITHUB, "read", "--config", cfg, "--catalog", gh.file("catalog.json", catalog), "--debug",
                  now=NOW)
    debug = [m["log"]["message"] for m in read.of("LOG") if m["log"]["level"] == "DEBUG"]
    assert sum(d.startswith("> [octo/") for d in debug) == sum(d.startswith("< [octo/") for d in debug) >= 4


def test_the_catalog_command_is_read_back_by_read(gh, github):
    cfg = gh.file("config.json", config(github))
    out = gh.run("--script", GITHUB, "catalog", "--config", cfg, protocol=False)
    catalog = json.loads(out.stdout)
    [entry] = catalog["streams"]
    assert entry["sync_mode"] == "incremental" and entry["cursor_field"] == ["updated_at"]
    assert entry["destination_sync_mode"] == "append_dedup" and entry["primary_key"] == [["id"]]
    full = json.loads(gh.run("--script", GITHUB, "catalog", "--config", cfg, "--mode", "full_refresh",
                             protocol=False).stdout)
    assert full["streams"][0]["sync_mode"] == "full_refresh"
    result = gh.run("--script", GITHUB, "read", "--config", cfg, "--catalog", gh.file("catalog.json", catalog), now=NOW)
    result.assert_complete()
    assert len(result.data) > 100
    bad = gh.run("--script", GITHUB, "catalog", "--config", cfg, "--streams", "issue", protocol=False)
    assert bad.returncode != 0 and "did you mean issues?" in bad.stdout


def test_a_replay_gives_the_same_records_and_state_with_the_server_stopped(gh, github, tmp_path):
    cfg = gh.file("config.json", config(github))
    catalog = gh.file("catalog.json", gh.run("--script", GITHUB, "catalog", "--config", cfg, protocol=False).stdout)
    cassette = tmp_path / "cassette"
    live = gh.run("--script", GITHUB, "--record", cassette, "read", "--config", cfg, "--catalog", catalog, now=NOW)
    live.assert_complete()
    files = sorted(cassette.glob("0*.json"))
    assert len(files) >= 2
    for f in files:
        assert_no_secret(f.read_text(), "", [TOKEN], f" in {f.name}")
    github.stop()
    # No clock given: the replay reads the recorded run's clock again.
    again = gh.run("--script", GITHUB, "--replay", cassette, "read", "--config", cfg, "--catalog", catalog)
    again.assert_complete()
    # Partitions are read side by side: the order across them varies, each one's does not.
    strip = lambda r: sorted(json.dumps(m["record"]["data"], sort_keys=True) for m in r.of("RECORD"))  # noqa: E731
    assert strip(again) == strip(live)
    # The checkpoints between depend on how the partitions' pages interleaved; the last does not.
    assert again.last_stream_state == live.last_stream_state
    # The token need not be the recorded one: secrets are masked out of both sides.
    other = gh.run("--script", GITHUB, "--replay", cassette, "read", "--config",
                   gh.file("config.json", config(github, token="placeholder")), "--catalog", catalog)
    assert strip(other) == strip(live)


def test_a_replay_names_the_request_it_has_no_recording_of(gh, github, tmp_path):
    cfg = gh.file("config.json", config(github, repositories=["octo/alpha"]))
    catalog = gh.file("catalog.json", gh.run("--script", GITHUB, "catalog", "--config", cfg, protocol=False).stdout)
    cassette = tmp_path / "cassette"
    gh.run("--script", GITHUB, "--record", cassette, "read", "--config", cfg, "--catalog", catalog,
           now=NOW).assert_complete()
    more = gh.file("config.json", config(github, repositories=["octo/alpha", "octo/beta"]))
    result = gh.run("--script", GITHUB, "--replay", cassette, "read", "--config", more, "--catalog", catalog)
    assert result.returncode != 0
    message = result.errors[-1]["message"]
    assert "has no recording of GET" in message and "/repos/octo/beta/issues" in message, message


def test_a_cassette_holding_a_secret_is_refused(gh, github, tmp_path):
    cfg = gh.file("config.json", config(github))
    catalog = gh.file("catalog.json", gh.run("--script", GITHUB, "catalog", "--config", cfg, protocol=False).stdout)
    cassette = tmp_path / "cassette"
    gh.run("--script", GITHUB, "--record", cassette, "read", "--config", cfg, "--catalog", catalog,
           now=NOW).assert_complete()
    first = cassette / "0001.json"
    first.write_text(first.read_text().replace("Body of issue", TOKEN, 1))
    result = gh.run("--script", GITHUB, "--replay", cassette, "read", "--config", cfg, "--catalog", catalog)
    assert result.returncode != 0
    assert "0001.json holds a secret of the config" in result.errors[-1]["message"]


def test_record_refuses_a_folder_with_a_recording_in_it(gh, github, tmp_path):
    cassette = tmp_path / "cassette"
    cassette.mkdir()
    (cassette / "0001.json").write_text("{}")
    result = gh.run("--script", GITHUB, "--record", cassette, "check", "--config", gh.file("config.json", config(github)))
    assert result.returncode != 0 and "holds a recording already" in result.stdout
    shutil.rmtree(cassette)
