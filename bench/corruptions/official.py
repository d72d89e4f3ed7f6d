"""The official CIFAR-10-C / CIFAR-100-C files, fetched once from the Zenodo records robustbench downloads from.

RobustBench's corruptions number is over these files. robustbench's own `zenodo_download` is not resumable (a
killed download leaves a partial .tar that it then skips forever, and an interrupted extraction leaves a folder
its loader takes for complete), so the fetch here uses robustbench's record ids and checksum but downloads with
HTTP ranges into `<name>.tar.part`, checks the md5, extracts into a temporary folder and renames it into place.
Reading goes through the same layout robustbench's `load_corruptions_cifar` reads: `<corruption>.npy` with
severities 1..5 stacked (10000 images each) and `labels.npy`.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile

from bench.corruptions.generator import CORRUPTIONS

CHUNK = 1 << 20
DIR_NAMES = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}


class CorruptionsSourceError(ValueError):
    """The official corruption files are missing and cannot be fetched; one line naming the way out."""


def complete(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "labels.npy")) and all(
        os.path.isfile(os.path.join(folder, f"{name}.npy")) for name in CORRUPTIONS)


def _offline(folder: str, dataset: str, why: str) -> CorruptionsSourceError:
    return CorruptionsSourceError(
        f"cannot fetch the official {DIR_NAMES[dataset]} files ({why}); offline, put its .npy files and labels.npy "
        f"into --corruptions-dir {folder}, or use --corruptions-source regenerated (the generator's parameters, "
        "rows labelled 'regenerated')")


def _download(url: str, dest: str, size: int, md5: str, progress=None) -> None:
    """Ranged download into dest + '.part', resumed from whatever an earlier try left; md5-checked."""
    import requests
    from robustbench.zenodo_download import file_md5

    part = dest + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if have > size:
        os.remove(part)
        have = 0
    if have < size:
        with requests.get(url, stream=True, timeout=60, headers={"Range": f"bytes={have}-"} if have else {}) as r:
            r.raise_for_status()
            mode = "ab" if have and r.status_code == 206 else "wb"  # a server ignoring Range sends it all again
            with open(part, mode) as f:
                for chunk in r.iter_content(chunk_size=CHUNK):
                    f.write(chunk)
                    if progress:
                        progress(len(chunk))
    if file_md5(part) != md5:
        os.remove(part)
        raise CorruptionsSourceError(f"{os.path.basename(dest)} does not match its md5 on Zenodo: the partial "
                                     "download was removed; run again to fetch it afresh")
    os.replace(part, dest)


def fetch_official(folder: str, dataset: str = "cifar10", progress=None) -> str:
    """Make `folder` hold the official files (a no-op when it already does); returns folder."""
    if complete(folder):
        return folder
    if dataset not in DIR_NAMES:
        raise CorruptionsSourceError(f"official corruption files exist for {', '.join(DIR_NAMES)}, not {dataset!r}; "
                                     "use --corruptions-source regenerated")
    try:
        import requests

        from bench.deps import import_robustbench

        import_robustbench()
        from robustbench.data import ZENODO_CORRUPTIONS_LINKS, BenchmarkDataset
        from robustbench.zenodo_download import RECORDS_ENTRY_POINT
    except ImportError as e:
        raise _offline(folder, dataset, f"{type(e).__name__}: {e}") from e
    record, names = ZENODO_CORRUPTIONS_LINKS[BenchmarkDataset(dataset)]
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    try:
        files = requests.get(f"{RECORDS_ENTRY_POINT}/{record}", timeout=60).json()["files"]
        for entry in (f for f in files if f["key"] in names):
            tar = os.path.join(parent, entry["key"])
            if not os.path.exists(tar):
                _download(entry["links"]["self"], tar, int(entry["size"]), entry["checksum"].split(":")[-1],
                          progress)
            tmp = tempfile.mkdtemp(prefix=".extract-", dir=parent)
            try:
                with tarfile.open(tar) as t:
                    if hasattr(tarfile, "data_filter"):  # no paths outside tmp, no links out of it
                        t.extractall(tmp, filter="data")
                    else:
                        t.extractall(tmp)
                found = next((root for root, _, fs in os.walk(tmp) if "labels.npy" in fs), None)
                if found is None or not complete(found):
                    raise CorruptionsSourceError(f"{tar} does not hold the {len(CORRUPTIONS)} corruption files and "
                                                 "labels.npy; delete it and run again")
                if os.path.exists(folder):  # an incomplete earlier copy
                    shutil.rmtree(folder)
                os.replace(found, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except CorruptionsSourceError:
        raise
    except Exception as e:  # offline: requests' ConnectionError; a proxy page instead of JSON: ValueError
        raise _offline(folder, dataset, type(e).__name__) from e
    if not complete(folder):
        raise _offline(folder, dataset, "the Zenodo record lists no matching file")
    return folder
