"""Peak memory of `handoff signals ingest` against the length of one over-long line, in one run.

    python bench/ingest_memory.py [--sizes 2,50,200]

For each size (MB) a file holds a good line, one line of that many bytes (a hole in a sparse
file, so nothing big is written) and another good line. Each file is ingested by a fresh
`handoff signals ingest` process on a scratch SQLite database; its peak resident memory
(getrusage of the child) is printed with the ratio to the smallest size's. Reading bounded
chunks keeps the ratio near 1.0; holding the line made it grow with the line (645 MB for
200 MB before issue 13). It asserts nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

_CHILD = """
import resource, sys
from orchestrator.cli import main
try:
    main(["signals", "ingest", sys.argv[1]])
except SystemExit:
    pass
print("peak_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _line(n: int) -> bytes:
    return json.dumps({"type": "product.usage", "account": {"domain": "acme.example"},
                       "occurred_at": "2026-11-23T13:00:00Z", "payload": {"n": n}}).encode()


def _file(directory: Path, megabytes: int) -> Path:
    path = directory / f"{megabytes}mb.jsonl"
    with path.open("wb") as file:
        file.write(_line(megabytes) + b"\n")
        file.seek(file.tell() + megabytes * 1024 * 1024)
        file.write(b"\n" + _line(-megabytes) + b"\n")
    return path


def _peak_kib(path: Path, env: dict[str, str]) -> int:
    result = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env, capture_output=True, text=True,
                            check=True)
    return int(result.stderr.rsplit("peak_kib", 1)[1].split()[0])


@click.command()
@click.option("--sizes", default="2,50,200", show_default=True, help="Line lengths to compare, in MB.")
def main(sizes: str) -> None:
    megabytes = [int(size) for size in sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        env = {**os.environ, "HANDOFF_DATABASE_URL": f"sqlite:///{directory / 'bench.db'}", "HANDOFF_CONFIG": ""}
        upgrade = "from orchestrator.cli import main; main(['db', 'upgrade'])"
        subprocess.run([sys.executable, "-c", upgrade], env=env, check=True, capture_output=True)
        peaks = {size: _peak_kib(_file(directory, size), env) for size in megabytes}
    base = peaks[megabytes[0]]
    for size, peak in peaks.items():
        print(f"line of {size:>4} MB: peak RSS {peak / 1024:7.1f} MB  ratio {peak / base:.2f}")


if __name__ == "__main__":
    main()
