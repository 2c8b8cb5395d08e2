"""Checks of the built image itself (run by `make image-test` after `make image`).

The acceptance suite runs through the image separately; these check what the platform relies on:
labels, AIRBYTE_ENTRYPOINT equal to the ENTRYPOINT, a shell for `eval`, a non-root user, the
script in /airbyte/scripts and the ways to replace it without a rebuild.
"""
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = os.environ.get("SOURCE_LUA_IMAGE", "airbyte/source-stock-ticker-api:dev")

pytestmark = pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")


def image_config():
    out = subprocess.run(["buildah", "inspect", "--type", "image", IMAGE], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)["OCIv1"]["config"]


def metadata_value(key):
    with open(os.path.join(ROOT, "metadata.yaml")) as f:
        for line in f:
            if line.strip().startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(key)


def run_in_image(shell_command, extra_args=()):
    ctr = subprocess.run(["buildah", "from", "--quiet", "--pull-never", IMAGE], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        return subprocess.run(["buildah", "run", "--isolation", "chroot", *extra_args, ctr, "--", "sh", "-c",
                               shell_command], capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def test_labels_name_and_version_from_metadata():
    labels = image_config()["Labels"]
    assert labels["io.airbyte.name"] == metadata_value("dockerRepository")
    assert labels["io.airbyte.version"] == metadata_value("dockerImageTag")


def test_airbyte_entrypoint_equals_entrypoint():
    config = image_config()
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["AIRBYTE_ENTRYPOINT"] == " ".join(config["Entrypoint"])


def test_runs_as_non_root_user():
    user = image_config().get("User", "")
    assert user not in ("", "root", "0")
    result = run_in_image("id -u")
    assert result.returncode == 0 and result.stdout.strip() != "0"


def test_spec_through_the_platforms_eval():
    result = run_in_image('eval "$AIRBYTE_ENTRYPOINT spec"')
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert [m["type"] for m in messages] == ["SPEC"]


def test_script_replaced_by_environment_variable(tmp_path):
    script = tmp_path / "renamed.lua"
    with open(os.path.join(ROOT, "scripts", "stock_prices.lua")) as f:
        script.write_text(f.read().replace('title = "Stock Ticker Spec"', 'title = "Edited In Place"'))
    os.chmod(tmp_path, 0o755)
    script.chmod(0o644)
    result = run_in_image('eval "$AIRBYTE_ENTRYPOINT spec"',
                          ["-v", f"{tmp_path}:{tmp_path}:ro", "--env", f"SOURCE_LUA_SCRIPT={script}"])
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout.splitlines()[0])["spec"]
    assert spec["connectionSpecification"]["title"] == "Edited In Place"


def test_scripts_folder_replaced_by_a_mount(tmp_path):
    with open(os.path.join(ROOT, "scripts", "stock_prices.lua")) as f:
        (tmp_path / "stock_prices.lua").write_text(f.read().replace('title = "Stock Ticker Spec"',
                                                                     'title = "Mounted Scripts"'))
    os.chmod(tmp_path, 0o755)
    (tmp_path / "stock_prices.lua").chmod(0o644)
    result = run_in_image('eval "$AIRBYTE_ENTRYPOINT spec"', ["-v", f"{tmp_path}:/airbyte/scripts:ro"])
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout.splitlines()[0])["spec"]
    assert spec["connectionSpecification"]["title"] == "Mounted Scripts"


def test_no_secrets_in_the_image():
    result = run_in_image("ls /airbyte; ls /airbyte/scripts; test ! -e /airbyte/secrets && echo clean")
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout
    assert "sl-test-key" not in run_in_image("grep -r sl-test-key /airbyte || true").stdout
