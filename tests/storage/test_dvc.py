"""Recording a stage in dvc.lock, as the flow does after each stage, says so once."""

import logging
import sys

import yaml

from steps import storage


def test_the_lock_file_line_is_printed_once_by_the_applications_logging(tmp_path, capfd):
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"make": {"cmd": "true", "outs": ["out.txt"]}}}))
    (tmp_path / "out.txt").write_text("made\n")
    application = logging.StreamHandler(sys.stderr)  # what Prefect puts on the root logger
    application.setFormatter(logging.Formatter("application | %(name)s - %(message)s"))
    logging.getLogger().addHandler(application)
    try:
        storage.commit_stage(tmp_path, "make")
    finally:
        logging.getLogger().removeHandler(application)
    out, err = capfd.readouterr()
    printed = (out + err).splitlines()
    # DVC's own handler used to print each line raw on stdout as well: twice in all
    assert [line for line in printed if "lock file" in line] == [
        "application | dvc.dvcfile - Generating lock file 'dvc.lock'",
        "application | dvc.dvcfile - Updating lock file 'dvc.lock'",
    ]
