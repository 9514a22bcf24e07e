"""Playbook files are measured before they are read, and links out of the folder are not followed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from orchestrator.playbook.loader import validate_paths

CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (512 * 1024 * 1024, 512 * 1024 * 1024))
    from orchestrator.playbook.loader import validate_paths
    findings = validate_paths(sys.argv[1:], last_changed=None)
    print(json.dumps([[f.path, f.rule, f.message] for f in findings]))
""")


def _validate_under_a_memory_limit(*paths: Path) -> list[list[str]]:
    child = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout)


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)  # 3 GB on paper, no disk used
    return path


def test_a_huge_file_in_the_folder_is_measured_not_read(tmp_path):
    folder = tmp_path / "playbooks"
    folder.mkdir()
    _sparse(folder / "huge.yaml", 3 * 1024**3)
    findings = _validate_under_a_memory_limit(folder)
    assert findings == [[str(folder / "huge.yaml"), "yaml",
                         "the file is larger than 256 KiB; a playbook is far smaller"]]


def test_a_huge_file_named_on_the_command_line_is_measured_not_read(tmp_path):
    huge = _sparse(tmp_path / "huge.yaml", 3 * 1024**3)
    findings = _validate_under_a_memory_limit(huge)
    assert [message for _, _, message in findings] == ["the file is larger than 256 KiB; a playbook is far smaller"]


def test_a_link_out_of_the_folder_is_not_followed_and_nothing_of_its_target_is_quoted(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "db.yaml").write_text("password: hunter2-secret\nid: [unclosed\n")
    _sparse(secrets / "huge.yaml", 3 * 1024**3)
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "leak.yaml").symlink_to(secrets / "db.yaml")
    (folder / "big.yaml").symlink_to(secrets / "huge.yaml")
    (folder / "shared").symlink_to(secrets, target_is_directory=True)

    findings = _validate_under_a_memory_limit(folder)

    assert "hunter2" not in json.dumps(findings)
    # A linked folder is not searched at all; a linked file is named and not read.
    assert sorted(path for path, _, _ in findings) == [str(folder / "big.yaml"), str(folder / "leak.yaml")]
    assert {message for _, _, message in findings} == {"links outside the playbooks folder; not followed"}


def test_a_link_inside_the_folder_is_followed(tmp_path):
    folder = tmp_path / "playbooks"
    (folder / "real").mkdir(parents=True)
    (folder / "real" / "p.yaml").write_text("id: [unclosed\n")
    (folder / "alias.yaml").symlink_to(folder / "real" / "p.yaml")
    findings = validate_paths([folder], last_changed=None)
    assert {Path(f.path).name for f in findings} == {"alias.yaml", "p.yaml"}
    assert all(f.rule == "yaml" for f in findings)


def test_a_fifo_named_like_a_playbook_does_not_block_validation(tmp_path):
    folder = tmp_path / "playbooks"
    folder.mkdir()
    os.mkfifo(folder / "pipe.yaml")
    findings = _validate_under_a_memory_limit(folder / "pipe.yaml")
    assert [message for _, _, message in findings] == ["not a regular file"]
