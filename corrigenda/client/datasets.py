"""Client methods for dataset versions and the example stream.

client = Client("http://127.0.0.1:8000", "sk_…")
version = client.create_dataset("support", formats=["jsonl", "parquet"])  # waits
folder = client.download("support", version["number"], "data/")          # verifies sha256
for example in client.iter_examples("support", since=cursor):             # incremental
    ...
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from tqdm import tqdm

from .http import ApiError, _problem_of

if TYPE_CHECKING:
    from .http import HttpClient

    _Base = HttpClient
else:
    _Base = object

CHUNK = 1 << 20


class DownloadError(Exception):
    """A downloaded file did not match its manifest checksum, even after a fresh retry."""


class DatasetsMixin(_Base):
    def create_dataset(
        self,
        project: str,
        *,
        formats: list[str] | None = None,
        filter: dict[str, Any] | None = None,  # noqa: A002 - the API's field name
        wait: bool = True,
        timeout: float = 3600.0,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Ask for a new version; with ``wait`` poll until it is ready (or raise if it failed)."""
        body: dict[str, Any] = {"filter": filter or {}}
        if formats:
            body["formats"] = formats
        version = self._json("POST", f"/api/v1/projects/{project}/datasets", json=body)
        return (
            self.wait_for_dataset(project, version["number"], timeout, progress)
            if wait
            else version
        )

    def wait_for_dataset(
        self, project: str, number: int, timeout: float = 3600.0, progress: bool = False
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        bar = tqdm(total=100, desc=f"building v{number}", unit="%", disable=not progress)
        try:
            while True:
                version = self.get_dataset(project, number)
                bar.update(round(version["progress"] * 100) - bar.n)
                if version["status"] == "ready":
                    return version
                if version["status"] == "failed":
                    raise RuntimeError(f"dataset version {number} failed: {version['error']}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dataset version {number} not ready after {timeout}s")
                self._sleep(0.5)
        finally:
            bar.close()

    def list_datasets(self, project: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/v1/projects/{project}/datasets")["datasets"]

    def get_dataset(self, project: str, number: int) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/projects/{project}/datasets/{number}")

    def delete_dataset(self, project: str, number: int) -> None:
        self._request("DELETE", f"/api/v1/projects/{project}/datasets/{number}")

    def download(
        self,
        project: str,
        number: int,
        dest: str | Path,
        *,
        formats: list[str] | None = None,
        progress: bool = False,
    ) -> Path:
        """Download a ready version into ``dest/<project>-v<number>/``; verify every sha256.

        Files already there with the right checksum are kept; a partial file is resumed with
        an HTTP range request. Returns the folder.
        """
        version = self.get_dataset(project, number)
        if version["status"] != "ready":
            raise RuntimeError(f"dataset version {number} is {version['status']}, not ready")
        folder = Path(dest) / f"{project}-v{number}"
        files = [f for f in version["files"] if not formats or f["format"] in formats]
        total = sum(f["bytes"] for f in files)
        with tqdm(total=total, unit="B", unit_scale=True, disable=not progress) as bar:
            for entry in files:
                self._download_file(entry, folder / entry["path"], bar)
        manifest = self._request("GET", version["manifest_url"]).content
        (folder / "manifest.json").write_bytes(manifest)
        (folder / "datasheet.md").write_bytes(
            self._request("GET", version["datasheet_url"]).content
        )
        return folder

    def _download_file(self, entry: dict[str, Any], path: Path, bar: tqdm) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            if (
                path.exists()
                and path.stat().st_size == entry["bytes"]
                and _sha256(path) == entry["sha256"]
            ):
                bar.update(entry["bytes"])
                return
            if attempt or (path.exists() and path.stat().st_size > entry["bytes"]):
                path.unlink(missing_ok=True)  # corrupt or wrong: start over
            try:
                self._fetch(entry["url"], path, bar)
            except httpx.TransportError:
                continue  # resume from what arrived
        if not path.exists() or _sha256(path) != entry["sha256"]:
            raise DownloadError(f"{entry['path']}: sha256 does not match the manifest")

    def _fetch(self, url: str, path: Path, bar: tqdm) -> None:
        have = path.stat().st_size if path.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._http.stream("GET", url, headers=headers) as response:
            if response.status_code == 416:
                return
            if response.status_code not in (200, 206):
                response.read()
                raise ApiError(response.status_code, _problem_of(response))
            mode = "ab" if response.status_code == 206 else "wb"
            with path.open(mode) as handle:
                for chunk in response.iter_bytes(CHUNK):
                    handle.write(chunk)
                    bar.update(len(chunk))

    def iter_examples(
        self, project: str, *, since: str = "0", limit: int = 1000, follow: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Examples changed after cursor ``since``, oldest change first; each carries its
        ``cursor`` (save the last one to resume). Tombstones have ``"deleted": true``.
        With ``follow`` keep polling for new changes instead of stopping at the end."""
        cursor = since
        while True:
            response = self._request(
                "GET",
                f"/api/v1/projects/{project}/examples",
                params={"since": cursor, "limit": limit},
            )
            for line in response.content.splitlines():
                yield orjson.loads(line)
            cursor = response.headers["Corrigenda-Next-Cursor"]
            if response.headers.get("Corrigenda-Has-More") != "true":
                if not follow:
                    return
                self._sleep(1.0)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
