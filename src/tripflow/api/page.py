"""The web page a browser gets at `/`, and the static files it loads.

The page is plain HTML, CSS and JavaScript in the package; the libraries it uses (Leaflet,
uPlot) are copied into static/vendor/NAME-VERSION/ by scripts/vendor-web.sh at setup. A
vendored file's URL names its version and the page's own files are linked with their
content's digest, so browsers may keep every one of them for a year: a new version or an
edit is a new URL. The HTML itself is revalidated on each visit."""

from __future__ import annotations

import hashlib
import posixpath
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, render_template, request, send_from_directory, url_for

from tripflow.weeks import Match

blueprint = Blueprint("page", __name__, template_folder="templates")

STATIC = Path(__file__).parent / "static"
VENDOR = "vendor/"
# Long enough that a browser never asks again; the URL changes when the content does.
YEAR_SECONDS = 365 * 24 * 3600


@cache
def _digest(name: str, modified_ns: int) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:16]


def file_digest(name: str) -> str:
    """Return the digest that names the present content of a static file."""
    return _digest(name, (STATIC / name).stat().st_mtime_ns)


def asset_url(name: str) -> str:
    """Return the URL of a static file: versioned by its directory or by its digest."""
    if name.startswith(VENDOR):
        return url_for("page.asset", name=name)
    return url_for("page.asset", name=name, v=file_digest(name))


class NotVendored(RuntimeError):
    """A library the page loads has not been copied into the package."""


@cache
def _vendored(package: str) -> str:
    found = sorted(path.name for path in (STATIC / VENDOR).glob(f"{package}-*") if path.is_dir())
    if len(found) != 1:
        raise NotVendored(
            f"expected one copy of {package} in {STATIC / VENDOR}, found {found or 'none'}: "
            "run scripts/vendor-web.sh (make setup does)"
        )
    return found[0]


def vendored_url(package: str, name: str) -> str:
    """Return the URL of a file of a vendored library (its version is in the path)."""
    return asset_url(f"{VENDOR}{_vendored(package)}/{name}")


def render_page() -> Response:
    """Render the web page (answered at `/` to clients that prefer HTML)."""
    html = render_template(
        "page.html",
        asset=asset_url,
        vendored=vendored_url,
        matches=[str(mode) for mode in Match],
    )
    response = Response(html, mimetype="text/html")
    # Kept, but asked about again each time: a new page links new files at once.
    response.cache_control.no_cache = True
    response.add_etag()
    response.make_conditional(request)
    return response


@blueprint.get("/static/<path:name>")
def asset(name: str) -> Response:
    """Send a static file of the page; versioned URLs may be kept for a year."""
    # Sent with no-cache (revalidated each time, by ETag) unless its URL is versioned.
    response = send_from_directory(STATIC, name)
    # The file sent (send_from_directory refuses paths that leave the folder).
    sent = posixpath.normpath(name)
    versioned = sent.startswith(VENDOR) or (request.args.get("v") == file_digest(sent))
    if versioned:
        response.cache_control.no_cache = None
        response.cache_control.public = True
        response.cache_control.max_age = YEAR_SECONDS
        response.cache_control.immutable = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
