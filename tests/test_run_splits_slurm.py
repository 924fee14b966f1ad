"""scripts/run_splits.py --launcher slurm, run through submitit's local executor: a tiny split end to end
(train + test inside one job), submit-and-wait, --detach then collect, the --slurm_* flag mapping."""
from __future__ import annotations

import json

import pytest
import submitit

from scripts import run_splits
from tests.conftest import REPO_ROOT
from tests.test_end_to_end import tiny_config  # noqa: F401 - the shared tiny synthetic run configuration

pytestmark = pytest.mark.slow


@pytest.fixture
def local_cluster(tmp_path, monkeypatch):
    """Jobs run by submitit.LocalExecutor on this machine; records the Slurm parameters they were given."""
    given = []

    def executor(folder, params):
        given.append(params)
        local = submitit.LocalExecutor(folder=folder)
        local.update_parameters(timeout_min=10)
        return local

    monkeypatch.setattr(run_splits, "make_slurm_executor", executor)
    monkeypatch.setattr(run_splits, "attach_slurm_job", lambda folder, job_id: submitit.LocalJob(folder, job_id))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the job unpickles scripts.run_splits
    monkeypatch.chdir(tmp_path)
    return given


def _argv(tiny_config, tmp_path, *extra):  # noqa: F811 - the fixture's value
    return ["--launcher", "slurm", "--split_ids", "0", "--cfg_path", str(tiny_config), "--model_name", "cl",
            "--output_root", str(tmp_path), "--epochs", "1", "--slurm_partition", "gpu", "--slurm_time", "1:30:00",
            "--slurm_extra", "qos=high", "cpus_per_task=4", *extra]


def test_detach_then_collect_and_reuse(tiny_config, tmp_path, local_cluster):  # noqa: F811
    argv = _argv(tiny_config, tmp_path)
    out = tmp_path / "results" / "Synthetic" / "cl_splits"
    pending = run_splits.main(argv + ["--detach"])
    assert pending == {"pending": [0]} and not (out / "table.md").exists()
    jobs = json.loads((out / "jobs.json").read_text())
    assert sorted(jobs) == ["0"]
    assert local_cluster[0] == {"job_name": "gap_split", "time": 90, "nodes": 1, "ntasks_per_node": 1,
                                "partition": "gpu", "gpus_per_node": 1, "qos": "high", "cpus_per_task": 4}
    for entry in jobs.values():  # let the detached jobs end (a later command would find them finished)
        job_paths = submitit.core.utils.JobPaths(entry["folder"], job_id=entry["job_id"], task_id=0)
        _wait_for(job_paths.result_pickle)
    table = run_splits.main(argv)  # the same command collects: no new job, the table of both splits
    assert table["rows"].keys() == {0} and len(local_cluster) == 1
    assert json.loads((out / "jobs.json").read_text()) == jobs
    assert (out / "table.md").read_text().count("\n| ") >= 3
    assert run_splits.split_paths(str(tmp_path), "Synthetic", "cl", 0).split_done.is_file()
    # finished splits are reused, even by the local launcher; other flags stop before anything is submitted
    assert run_splits.main(argv[2:])["rows"].keys() == {0}
    assert len(local_cluster) == 1
    with pytest.raises(ValueError, match="--seed"):
        run_splits.main(argv + ["--seed", "5"])


def test_submit_and_wait_gives_the_table(tiny_config, tmp_path, local_cluster):  # noqa: F811
    table = run_splits.main(_argv(tiny_config, tmp_path, "--split_ids", "3"))
    assert table["rows"].keys() == {3} and len(local_cluster) == 1
    metrics = json.loads(run_splits.split_paths(str(tmp_path), "Synthetic", "cl", 3).split_done.read_text())
    assert 0.0 <= metrics["metrics"]["average_mAP"] <= 1.0


def test_unknown_slurm_parameter_is_refused_before_submitting(tiny_config, tmp_path, local_cluster):  # noqa: F811
    with pytest.raises(ValueError, match="'colour' is not a submitit Slurm parameter"):
        run_splits.main(_argv(tiny_config, tmp_path, "--slurm_extra", "colour=red"))
    assert local_cluster == [] and not (tmp_path / "results" / "Synthetic" / "cl_splits" / "jobs.json").exists()


@pytest.mark.parametrize("text,minutes", [("90", 90), ("1:30:00", 90), ("2-00:00:00", 2880), ("0:00:30", 1)])
def test_slurm_time(text, minutes):
    assert run_splits.slurm_time_minutes(text) == minutes


def _wait_for(path, timeout=600):
    import time

    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"the job did not finish: no {path}"
        time.sleep(0.5)


class _FakeJob:
    """A recorded job: `running` until result() is called, which finishes the split via `on_result`."""

    def __init__(self, job_id, done, on_result=None):
        self.job_id, self._done, self._on_result = job_id, done, on_result
        self.state = "FAILED" if done else "RUNNING"

    def done(self):
        return self._done

    def result(self):
        self._on_result()


def test_collect_waits_for_running_jobs_and_resubmits_ended_ones(tmp_path, monkeypatch):
    """jobs.json from an earlier --detach: split 0's job still runs (waited for, not resubmitted), split 1's job
    ended without finishing it (submitted again)."""
    from tests.test_run_splits import ARGV, _mark_finished

    monkeypatch.chdir(tmp_path)
    argv = ["--launcher", "slurm", "--split_ids", "0-1", *ARGV]
    out = tmp_path / "results" / "Synthetic" / "m_splits"
    out.mkdir(parents=True)
    jobs = {"0": {"job_id": "100", "folder": str(out / "slurm")}, "1": {"job_id": "101", "folder": str(out / "slurm")}}
    (out / "jobs.json").write_text(json.dumps(jobs))
    split = {i: run_splits.split_paths(".", "Synthetic", "m", i) for i in (0, 1)}
    requested = {i: run_splits.split_config(ARGV, "m", i) for i in (0, 1)}
    attached = {"100": _FakeJob("100", False, lambda: _mark_finished(split[0], requested[0])),
                "101": _FakeJob("101", True)}
    monkeypatch.setattr(run_splits, "attach_slurm_job", lambda folder, job_id: attached[job_id])
    submitted = []

    class Executor:
        def submit(self, function, cwd, split_id, *args):
            submitted.append(split_id)
            return _FakeJob("102", False, lambda: _mark_finished(split[split_id], requested[split_id]))

    monkeypatch.setattr(run_splits, "make_slurm_executor", lambda folder, params: Executor())
    table = run_splits.main(argv)
    assert submitted == [1] and table["rows"].keys() == {0, 1}
    recorded = json.loads((out / "jobs.json").read_text())
    assert recorded["0"]["job_id"] == "100" and recorded["1"]["job_id"] == "102"
