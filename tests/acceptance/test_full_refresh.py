"""Two full-refresh reads in a row: CAT's TestFullRefresh.test_sequential_reads, split in three."""

from __future__ import annotations

import time

import pytest

from .messages import primary_key, record_identity, records_by_stream, with_sync_mode

# CAT sleeps so that a second-resolution emitted_at still differs between the reads.
PAUSE_BETWEEN_READS_SECONDS = 1.0


@pytest.fixture
def full_refresh_catalog(configured_catalog):
    catalog = with_sync_mode(configured_catalog, "full_refresh")
    if not catalog["streams"]:
        pytest.skip("no stream of the catalog supports full_refresh")
    return catalog


@pytest.fixture
def two_reads(runner, connector_config, full_refresh_catalog):
    """Two fresh reads, made once per case and shared by the tests below."""

    def read_twice():
        first = runner.read(connector_config, full_refresh_catalog)
        time.sleep(PAUSE_BETWEEN_READS_SECONDS)
        second = runner.read(connector_config, full_refresh_catalog)
        return first, second

    key = ("full_refresh", str(connector_config), repr(full_refresh_catalog))
    return runner.cached(key, read_twice)


class TestFullRefresh:
    config_key = "full_refresh"

    def test_sequential_reads_give_records(self, two_reads):
        for label, run in zip(("first", "second"), two_reads):
            assert run.returncode == 0, f"the {label} read should exit 0\n{run.describe()}"
            assert run.records, f"the {label} read should give records\n{run.describe()}"

    def test_emitted_at_increases_on_subsequent_runs(self, two_reads):
        first, second = two_reads
        assert first.records and second.records, "both reads should give records"
        max_first = max(r["emitted_at"] for r in first.records)
        min_second = min(r["emitted_at"] for r in second.records)
        assert max_first < min_second, (
            f"emitted_at should increase on subsequent runs: latest of the first read {max_first}, "
            f"earliest of the second {min_second}"
        )

    def test_sequential_reads_produce_same_or_subset_records(self, two_reads, full_refresh_catalog):
        first, second = two_reads
        assert first.records, "the first read gave no records to compare"
        keys = {c["stream"]["name"]: primary_key(c) for c in full_refresh_catalog["streams"]}
        second_by_stream = records_by_stream(second.records)
        for stream, records in records_by_stream(first.records).items():
            pk = keys.get(stream, [])
            ids_1 = {record_identity(r["data"], pk) for r in records}
            ids_2 = {record_identity(r["data"], pk) for r in second_by_stream.get(stream, [])}
            missing = sorted(ids_1 - ids_2)
            assert not missing, (
                f"{stream}: the two sequential reads should produce either equal set of records or one of "
                f"them is a strict subset of the other; missing from the second read: {missing[:10]}"
            )
