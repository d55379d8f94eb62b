"""Run the real `tripflow` command and talk to the services it starts."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TRIPFLOW = str(Path(sys.executable).parent / "tripflow")


def tripflow(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [TRIPFLOW, *args], env=env, cwd=env["TRIPFLOW_HOME"], capture_output=True, text=True
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def get(url: str) -> tuple[int, str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.load(error)
