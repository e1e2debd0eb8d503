"""scripts/prefect.sh serves the Prefect UI, and the link a flow run prints opens that run's page."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_link_a_run_prints_opens_its_page_in_the_ui(tmp_path):
    port = _free_port()  # not 4200: the UI must be told where its API is
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_PORT": str(port)}
    env.pop("PREFECT_API_URL", None)
    script = ["bash", str(REPO / "scripts" / "prefect.sh")]
    try:
        up = subprocess.run([*script, "up"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout
        flow = "from prefect import flow\n@flow\ndef hello():\n    return 1\nhello()\n"
        run = subprocess.run([sys.executable, "-c", flow], env={**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"},
                             capture_output=True, text=True, timeout=120)
        link = re.search(r"View at (http://\S+/runs/flow-run/[0-9a-f-]+)", run.stdout + run.stderr)
        assert link, run.stdout + run.stderr
        page = httpx.get(link.group(1), headers={"Accept": "text/html"}, follow_redirects=True, timeout=30)
        assert page.status_code == 200 and "<title>Prefect Server" in page.text
        settings = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=30).json()
        assert settings["api_url"] == f"http://127.0.0.1:{port}/api"  # the page's scripts reach this server
    finally:
        subprocess.run([*script, "down"], env=env, capture_output=True, timeout=120)
