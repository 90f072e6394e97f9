from pathlib import Path

from devstack.stack import ServiceStack


def test_a_log_folder_given_by_the_caller_is_created(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "yet" / "there"
    stack = ServiceStack(log_dir=folder)
    assert folder.is_dir() and stack.log_dir == folder
