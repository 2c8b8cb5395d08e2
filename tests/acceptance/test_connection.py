"""`check`: CAT's TestConnection, one test per `connection` case of the YAML."""

from __future__ import annotations


class TestConnection:
    config_key = "connection"

    def test_check(self, inputs, runner, connector_config):
        run = runner.check(connector_config)
        statuses = [m.get("connectionStatus") or {} for m in run.of_type("CONNECTION_STATUS")]

        if inputs.status in ("succeed", "failed"):
            expected = "SUCCEEDED" if inputs.status == "succeed" else "FAILED"
            assert len(statuses) == 1, f"CONNECTION_STATUS should be emitted exactly once, got {len(statuses)}\n{run.describe()}"
            assert statuses[0].get("status") == expected, f"expected {expected}, got {statuses[0]}\n{run.describe()}"
            assert run.returncode == 0, f"a check that reports a status should exit 0\n{run.describe()}"
        else:  # exception
            errors = run.traces("ERROR")
            assert errors, f"an exception case should print a TRACE ERROR\n{run.describe()}"
            messages = [(e.get("error") or {}).get("message") for e in errors]
            assert all(isinstance(m, str) and m.strip() for m in messages), f"TRACE ERROR without a message: {errors}"
