"""The local Label Studio server: find its virtual environment, start and stop it, and hand out
the connection (url + API token) without ever printing the token.

Label Studio pins many packages that clash with the project's, so it lives in its own virtual
environment (`scripts/install_label_studio.sh`), found by `find_ls_venv`: `DISTILL_LS_VENV` if set,
else `.venv-ls` in the current directory if there is one, else `<repo>/.venv-ls` (editable install).
Everything the server keeps sits in one data directory (default
`~/.local/share/distill/label-studio`, or `DISTILL_LS_DATA_DIR`):

    label_studio.sqlite3, media/ ...   Label Studio's own data
    credentials.json (mode 600)        admin email, password and API token, made on first start
    server.json                        url, port and pid of the running server
    label-studio.log                   its output

Public API:
    find_ls_venv(env, cwd, repo=REPO) -> Path; ls_venv() -> Path   the Label Studio virtualenv
    default_data_dir() -> Path
    start(data_dir=None, port=8080, host="127.0.0.1", timeout=180.0) -> LabelStudioServer
    stop(data_dir=None, timeout=20.0) -> bool
    server_status(data_dir=None) -> dict
    connection(url=None, token=None, data_dir=None) -> Connection

The token is set only when the admin user is first created (Label Studio's legacy token, which
`LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true` keeps working), so it is generated once per data
directory and kept in its owner-only credentials file.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from distill_ner.data.errors import DistillError

REPO = Path(__file__).resolve().parents[1]
ADMIN_EMAIL = "admin@distill.local"
CREDENTIALS = "credentials.json"
SERVER_FILE = "server.json"
LOG_FILE = "label-studio.log"


@dataclass(frozen=True)
class Connection:
    """Where Label Studio is and the API token to use; `repr` hides the token."""

    url: str
    token: str

    def __repr__(self) -> str:
        return f"Connection(url={self.url!r}, token='***')"


@dataclass(frozen=True)
class LabelStudioServer:
    """A running server started by `start`."""

    url: str
    token: str
    pid: int
    port: int
    data_dir: Path

    def __repr__(self) -> str:
        return f"LabelStudioServer(url={self.url!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"

    @property
    def connection(self) -> Connection:
        return Connection(self.url, self.token)


def find_ls_venv(env: Mapping[str, str], cwd: Path, repo: Path = REPO) -> Path:
    """Where the Label Studio virtual environment is: `DISTILL_LS_VENV` if set, else `.venv-ls`
    in `cwd` if there is one, else `<repo>/.venv-ls` (the checkout, for an editable install)."""
    if env.get("DISTILL_LS_VENV"):
        return Path(env["DISTILL_LS_VENV"])
    if (cwd / ".venv-ls").is_dir():
        return cwd / ".venv-ls"
    return repo / ".venv-ls"


def ls_venv() -> Path:
    """The Label Studio virtual environment, looked up by `find_ls_venv` from here."""
    return find_ls_venv(os.environ, Path.cwd())


def ls_executable() -> Path:
    """The `label-studio` command of its venv; a clear error if it is not installed."""
    exe = ls_venv() / "bin" / "label-studio"
    if not exe.exists():
        raise DistillError(
            f"Label Studio is not installed at {ls_venv()}: run scripts/install_label_studio.sh "
            "(or set DISTILL_LS_VENV to its virtual environment)"
        )
    return exe


def default_data_dir() -> Path:
    """Label Studio's data directory (`DISTILL_LS_DATA_DIR`, default ~/.local/share/distill/label-studio)."""
    env = os.environ.get("DISTILL_LS_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "distill" / "label-studio"


def _credentials(data_dir: Path) -> dict[str, str]:
    """Read (or make, on first use) the admin credentials, in a file only the owner can read."""
    path = data_dir / CREDENTIALS
    if path.exists():
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise DistillError(f"{path}: the credentials file is readable by others; run `chmod 600 {path}`")
        return json.loads(path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # the database holds the token too
    creds = {
        "email": ADMIN_EMAIL,
        "password": secrets.token_urlsafe(18),
        "token": secrets.token_hex(20),
        "secret_key": secrets.token_urlsafe(40),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(creds, handle)
    return creds


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# Label Studio 1.23 sends error reports to its vendor's Sentry by default (back end and browser),
# checks PyPI for new versions, sends usage analytics and may fetch feature flags: all off.
TELEMETRY_OFF = {
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "COLLECT_ANALYTICS": "false",
    "LATEST_VERSION_CHECK": "false",
    "FEATURE_FLAGS_OFFLINE": "true",
}


def _server_env(data_dir: Path, creds: dict[str, str]) -> dict[str, str]:
    """A clean environment: stray USERNAME/PASSWORD/HOST variables would leak into Label Studio;
    nothing is reported off the machine (`TELEMETRY_OFF`)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_USERNAME=creds["email"],
        LABEL_STUDIO_PASSWORD=creds["password"],
        LABEL_STUDIO_USER_TOKEN=creds["token"],
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_SSRF_PROTECTION_ENABLED="false",  # webhooks to a local receiver
        DJANGO_DB="sqlite",
        SECRET_KEY=creds["secret_key"],
        PYTHONUNBUFFERED="1",
        **TELEMETRY_OFF,
    )
    return env


def start(data_dir: str | Path | None = None, port: int = 8080, host: str = "127.0.0.1", timeout: float = 180.0) -> LabelStudioServer:
    """Start Label Studio in the background and wait until its API answers.

    If a server started from this data directory is already up, return it. The first start of a
    fresh data directory runs the migrations (about a minute); later starts take seconds.
    """
    data_dir = Path(data_dir or default_data_dir()).resolve()
    running = _running(data_dir)
    if running:
        return running
    exe = ls_executable()
    creds = _credentials(data_dir)
    if not _port_free(host, port):  # Label Studio would silently move to another port
        raise DistillError(f"port {port} on {host} is taken: choose another with --port")
    log = (data_dir / LOG_FILE).open("ab")
    cmd = [str(exe), "start", "--no-browser", "--host", host, "--internal-host", host, "--port", str(port), "--data-dir", str(data_dir)]
    proc = subprocess.Popen(cmd, env=_server_env(data_dir, creds), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=data_dir)
    log.close()
    url = f"http://{host}:{port}"
    (data_dir / SERVER_FILE).write_text(json.dumps({"url": url, "port": port, "pid": proc.pid}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            (data_dir / SERVER_FILE).unlink(missing_ok=True)
            raise DistillError(f"Label Studio exited with status {proc.returncode} while starting: see {data_dir / LOG_FILE}")
        if _healthy(url):
            return LabelStudioServer(url, creds["token"], proc.pid, port, data_dir)
        time.sleep(1.0)
    stop(data_dir)
    raise DistillError(f"Label Studio did not answer on {url} within {timeout:.0f} s: see {data_dir / LOG_FILE}")


def _server_info(data_dir: Path) -> dict | None:
    path = data_dir / SERVER_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _running(data_dir: Path) -> LabelStudioServer | None:
    info = _server_info(data_dir)
    if not info or not _alive(info["pid"]) or not _healthy(info["url"]):
        return None
    return LabelStudioServer(info["url"], _credentials(data_dir)["token"], info["pid"], info["port"], data_dir)


def stop(data_dir: str | Path | None = None, timeout: float = 20.0) -> bool:
    """Stop the server started from this data directory; False if none was running."""
    data_dir = Path(data_dir or default_data_dir()).resolve()
    info = _server_info(data_dir)
    if not info or not _alive(info["pid"]):
        (data_dir / SERVER_FILE).unlink(missing_ok=True)
        return False
    pid = info["pid"]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)  # started in its own session: its group holds its children
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if not _alive(pid):
            break
    (data_dir / SERVER_FILE).unlink(missing_ok=True)
    return True


def server_status(data_dir: str | Path | None = None) -> dict:
    """Whether the server of this data directory runs and answers (no token in the result)."""
    data_dir = Path(data_dir or default_data_dir()).resolve()
    info = _server_info(data_dir) or {}
    pid = info.get("pid")
    alive = bool(pid) and _alive(pid)
    return {
        "data_dir": str(data_dir),
        "running": alive,
        "healthy": alive and _healthy(info["url"]),
        "url": info.get("url"),
        "pid": pid if alive else None,
        "installed": (ls_venv() / "bin" / "label-studio").exists(),
    }


def connection(url: str | None = None, token: str | None = None, data_dir: str | Path | None = None) -> Connection:
    """The connection to use: explicit arguments, then `LABEL_STUDIO_URL` / `LABEL_STUDIO_API_KEY`,
    then the files `distill label-studio up` wrote in the data directory."""
    url = url or os.environ.get("LABEL_STUDIO_URL")
    token = token or os.environ.get("LABEL_STUDIO_API_KEY")
    data_dir = Path(data_dir or default_data_dir())
    if not url:
        info = _server_info(data_dir)
        if not info:
            raise DistillError(f"no Label Studio URL: set LABEL_STUDIO_URL or start one with `distill label-studio up` (data dir {data_dir})")
        url = info["url"]
    if not token:
        if not (data_dir / CREDENTIALS).exists():
            raise DistillError(f"no Label Studio API token: set LABEL_STUDIO_API_KEY or start one with `distill label-studio up` (data dir {data_dir})")
        token = _credentials(data_dir)["token"]
    return Connection(url.rstrip("/"), token)
