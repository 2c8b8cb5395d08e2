"""scripts/examples/github_issues.lua against tests/server/github_server.py: Link-header pages
(whose URLs use another path, /repositories/{id}/issues, as GitHub's do), a datetime cursor with
ties across pages, one partition a repository, a resume that reads only what changed, and the
errors a user meets (a wrong token, a repository that is not there)."""

from __future__ import annotations

import json

import pytest

from .conftest import REPO, Connector, assert_no_secret

import github_server  # noqa: E402  (tests/server is on the path: conftest puts it there)

SCRIPT = REPO / "scripts" / "examples" / "github_issues.lua"
TOKEN = "ghp_test_token_0001"
START = "2024-03-01"


@pytest.fixture
def github():
    server = github_server.GitHubServer(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def gh(tmp_path, github) -> Connector:
    connector = Connector(tmp_path, github)
    connector.secrets.append(TOKEN)
    return connector


def config(github, **fields) -> dict:
    value = {"token": TOKEN, "repositories": ["octo/alpha", "octo/beta"], "start_date": START,
             "base_url": github.base_url}
    value.update(fields)
    return value


def catalog(gh, cfg) -> dict:
    found = gh.run("--script", SCRIPT, "discover", "--config", gh.file("config.json", cfg))
    stream = found.of("CATALOG")[0]["catalog"]["streams"][0]
    return {"streams": [{"stream": stream, "sync_mode": "incremental", "destination_sync_mode": "append_dedup",
                         "cursor_field": ["updated_at"], "primary_key": [["id"]]}]}


def read(gh, cfg, state=None):
    args = ["--script", SCRIPT, "read", "--config", gh.file("config.json", cfg),
            "--catalog", gh.file("catalog.json", catalog(gh, cfg))]
    if state is not None:
        args += ["--state", gh.file("state.json", state)]
    return gh.run(*args)


def ids(result, repository) -> list:
    return [d["id"] for d in result.data if d["repository"] == repository]


def test_every_issue_updated_since_the_start_once_in_order(gh, github):
    result = read(gh, config(github)).assert_complete()
    for repository in ("octo/alpha", "octo/beta"):
        expected = github.expected(repository, START + "T00:00:00Z")
        assert len(expected) > 100, "more than one page"
        assert ids(result, repository) == [i["id"] for i in expected]
    record = result.data[0]
    assert set(record) >= {"id", "repository", "number", "title", "state", "labels", "is_pull_request",
                           "updated_at", "created_at", "closed_at", "user_login"}
    assert any(d["is_pull_request"] for d in result.data) and not all(d["is_pull_request"] for d in result.data)
    sent = github.requests
    assert any(r["path"].startswith("/repositories/") for r in sent), "the Link header's pages were followed"
    assert all(r["accept"] == "application/vnd.github+json" and r["authorized"] for r in sent)
    first = sent[0]["query"]
    assert {k: first[k] for k in ("state", "sort", "direction", "per_page")} == \
        {"state": "all", "sort": "updated", "direction": "asc", "per_page": "100"}


def test_a_resume_reads_only_the_issues_updated_since(gh, github):
    cfg = config(github)
    first = read(gh, cfg).assert_complete()
    state = [first.of("STATE")[-1]["state"]]
    again = read(gh, cfg, state).assert_complete()
    assert again.data == [], "nothing changed"
    # Two issues updated in the same second, after the first read.
    github.touch("octo/alpha", 7, "2024-07-01T00:00:00Z")
    github.touch("octo/alpha", 8, "2024-07-01T00:00:00Z")
    later = read(gh, cfg, [again.of("STATE")[-1]["state"]]).assert_complete()
    assert sorted(d["number"] for d in later.data) == [7, 8]
    assert all(d["repository"] == "octo/alpha" for d in later.data)


def test_a_wrong_token_is_a_config_error_that_never_shows_it(gh, github):
    wrong = "ghp_wrong_token_9999"
    gh.secrets.append(wrong)
    cfg = config(github, token=wrong)
    checked = gh.run("--script", SCRIPT, "check", "--config", gh.file("config.json", cfg))
    assert checked.connection_status["status"] == "FAILED"
    assert "rejected the token" in checked.connection_status["message"]
    result = gh.run("--script", SCRIPT, "read", "--config", gh.file("config.json", cfg),
                    "--catalog", gh.file("catalog.json", catalog(gh, config(github))))
    assert result.returncode != 0
    assert result.errors[-1]["failure_type"] == "config_error"
    assert "rejected the token" in result.errors[-1]["message"]
    assert_no_secret(result.stdout, result.stderr, [wrong])


def test_a_repository_that_is_not_there_is_named(gh, github):
    cfg = config(github, repositories=["octo/alpha", "octo/missing"])
    checked = gh.run("--script", SCRIPT, "check", "--config", gh.file("config.json", cfg))
    assert checked.connection_status["status"] == "FAILED"
    assert "octo/missing" in checked.connection_status["message"]
    result = read(gh, cfg)
    assert result.returncode != 0
    error = result.errors[-1]
    assert error["failure_type"] == "config_error" and "octo/missing" in error["message"], error


def test_spec_marks_the_token_secret(gh):
    spec = gh.run("--script", SCRIPT, "spec").of("SPEC")[0]["spec"]["connectionSpecification"]
    assert spec["properties"]["token"]["airbyte_secret"] is True
    assert spec["required"] == ["repositories", "start_date"]
    assert json.dumps(spec)  # a plain JSON document
