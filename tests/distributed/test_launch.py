"""Distributed training: kvstore helpers, the plan check, and real ps-lite jobs on loopback.

The job tests start a scheduler, a server and two workers (``dist_worker.py`` here) through
``python -m bucketrnn.distributed.launch`` and bound every wait with a subprocess timeout.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from bucketrnn import distributed
from bucketrnn.distributed import kvstore, launch
from bucketrnn.training import checkpoint as ckpt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "distributed", "dist_worker.py")
JOB_TIMEOUT = 90  # the launcher's own --timeout; the subprocess timeout is a little longer



def run_job(out, *worker_args, workers=2, timeout=JOB_TIMEOUT):
    """Launch a job of ``workers`` dist_worker.py processes; return (code, output, seconds)."""
    cmd = [sys.executable, "-m", "bucketrnn.distributed.launch", "--workers", str(workers),
           "--servers",
           "1", "--timeout", str(timeout), "--", sys.executable, WORKER, "--out", str(out),
           *map(str, worker_args)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout + 30)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def run_single(out, *worker_args):
    cmd = [sys.executable, WORKER, "--kvstore", "local", "--out", str(out), *map(str, worker_args)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.load(open(os.path.join(out, "worker-0.json")))


def results(out, workers=2):
    return [json.load(open(os.path.join(out, f"worker-{r}.json"))) for r in range(workers)]


# ------------------------------------------------------------------------ kvstore helpers
def test_local_kvstore_is_one_shard_and_writes_checkpoints():
    kv = distributed.create_kvstore("local")
    assert kv.type == "local"
    assert distributed.shard_of(kv) == (1, 0)
    assert distributed.is_checkpoint_writer(kv) and distributed.is_checkpoint_writer(None)
    assert distributed.update_on_kvstore(kv) is False
    assert distributed.create_kvstore(kv) is kv and distributed.create_kvstore(None) is None


def test_kvstore_names_and_the_trainer_helpers_in_one_process():
    import mxnet as mx
    from mxnet import autograd, gluon

    assert distributed.shard_of("device") == (1, 0)
    assert distributed.update_on_kvstore("dist_async") is True
    assert distributed.update_on_kvstore("dist_sync") is False
    with pytest.raises(ValueError, match="kvstore='dist_sync' is a name: create the store"):
        distributed.shard_of("dist_sync")
    net = gluon.nn.Dense(1, in_units=2)
    net.initialize(mx.init.One())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0},
                            kvstore=distributed.create_kvstore("local"), update_on_kvstore=False)
    with autograd.record():
        loss = net(mx.nd.ones((1, 2))).sum()
    loss.backward()
    distributed.allreduce_grads(trainer)
    trainer.update(1)
    assert net.weight.data().asnumpy().tolist() == [[0.0, 0.0]]
    with autograd.record():
        loss = net(mx.nd.ones((1, 2))).sum()
    loss.backward()
    distributed.step(trainer, 1)
    assert net.weight.data().asnumpy().tolist() == [[-1.0, -1.0]]


def test_unknown_kvstore_name_is_refused():
    with pytest.raises(ValueError, match=r"kvstore must be one of .*got kvstore='dist'"):
        distributed.create_kvstore("dist")


def test_dist_kvstore_outside_a_job_names_missing_variables(monkeypatch):
    for name in kvstore.DIST_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=r"kvstore='dist_sync' needs a distributed job, but "
                                         r"DMLC_ROLE, DMLC_PS_ROOT_URI.* `bucketrnn-launch "):
        distributed.create_kvstore("dist_sync")
    for name in kvstore.DIST_ENV:
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("DMLC_ROLE", "server")
    with pytest.raises(ValueError, match="workers only, but this process has DMLC_ROLE='server'"):
        distributed.create_kvstore("dist_async")


def test_default_threads_share_the_cores():
    assert distributed.default_threads(2, cores=8) == 4
    assert distributed.default_threads(3, cores=2) == 1
    assert distributed.default_threads(1) >= 1
    with pytest.raises(ValueError, match="workers_on_host must be an integer >= 1, got "
                                         "workers_on_host=0"):
        distributed.default_threads(0)


@pytest.mark.parametrize("raise_, code, shown", [
    ("raise RuntimeError('boom')", 1, "RuntimeError: boom"),
    ("raise SystemExit(2)", 2, ""),
])
def test_exit_on_error_leaves_a_worker_at_once(raise_, code, shown):
    script = ("import atexit, os\nfrom bucketrnn import distributed\n"
              "atexit.register(lambda: print('atexit ran'))\n"
              "with distributed.exit_on_error():\n    " + raise_ + "\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, DMLC_ROLE="worker"))
    assert proc.returncode == code
    assert shown in proc.stderr
    assert "atexit ran" not in proc.stdout  # left without running exit handlers (no barrier)


def test_a_worker_without_omp_num_threads_is_warned():
    from bucketrnn import BucketRNNWarning

    with pytest.warns(BucketRNNWarning, match="OMP_NUM_THREADS is not set"):
        distributed.check_threads({"DMLC_NUM_WORKER": "2"})
    distributed.check_threads({"OMP_NUM_THREADS": "1"})


def test_exit_on_error_is_a_no_op_without_dist():
    with pytest.raises(KeyError):
        with distributed.exit_on_error(None):
            raise KeyError("passes through")


# ------------------------------------------------------------------------ launcher
def test_launcher_refuses_a_port_in_use(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        started = time.monotonic()
        code = launch.main(["--workers", "2", "--port", str(port), "--", sys.executable, "-V"])
    assert code == 2 and time.monotonic() - started < 5
    assert f"--port={port} on 127.0.0.1 is in use" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0", "--", "true"], "--workers must be an int >= 1, got --workers=0"),
    (["--servers", "0", "--", "true"], "--servers must be an int >= 1, got --servers=0"),
    (["--timeout", "0", "--", "true"], "--timeout must be > 0 seconds"),
    (["--workers", "2"], "no worker command: put it after `--`"),
])
def test_launcher_bad_arguments(argv, message, capsys):
    assert launch.main(argv) == 2
    assert message in capsys.readouterr().err


def test_launcher_timeout_kills_the_job(capsys):
    started = time.monotonic()
    code = launch.launch([sys.executable, "-c", "import time; time.sleep(60)"], workers=1,
                         timeout=2, out=sys.stdout)
    assert code == 124 and time.monotonic() - started < 15
    assert "timeout: the job ran longer than --timeout=2s" in capsys.readouterr().out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_a_killed_launcher_takes_its_processes_with_it(sig):
    import signal

    worker = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-m", "bucketrnn.distributed.launch", "--workers", "1",
                             "--",
                             sys.executable, "-c", worker], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        pid = None
        for line in proc.stdout:
            if line.startswith("[worker 0] pid "):
                pid = int(line.split()[-1])
                break
        assert pid and _alive(pid)
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), f"the worker outlived a launcher killed by {sig}"
    finally:
        proc.kill()
        proc.wait()


def test_every_process_of_a_job_gets_its_threads_and_the_wait_setting():
    from bucketrnn.cores import WAIT_DEFAULT

    base = {"DMLC_NUM_WORKER": "2", "OMP_NUM_THREADS": "8"}
    worker = launch.process_env(base, "worker", 3)
    assert worker == {**base, "DMLC_ROLE": "worker", "OMP_NUM_THREADS": "3", **WAIT_DEFAULT}
    server = launch.process_env(base, "server")
    assert server["OMP_NUM_THREADS"] == "1" and server["DMLC_ROLE"] == "server"
    assert all(server[k] == v for k, v in WAIT_DEFAULT.items())
    assert base == {"DMLC_NUM_WORKER": "2", "OMP_NUM_THREADS": "8"}  # not changed
    # The user's wait setting passes unchanged to every process.
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        for role in ("scheduler", "server", "worker"):
            env = launch.process_env(user, role)
            assert {k: env.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} == {
                "OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None, **user}


def test_describe_exit_codes():
    assert launch.describe(3) == "exit code 3"
    assert launch.describe(-9) == "signal SIGKILL"


# ------------------------------------------------------------------------ real jobs
TRAIN = ("--epochs", 2, "--examples", 40, "--batch-size", 4)


@pytest.fixture(scope="module")
def sync_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("sync")
    code, output, seconds = run_job(out, *TRAIN, "--run-dir", out / "run",
                                    "--checkpoint-every", 2)
    return code, output, seconds, out


def test_two_workers_train_in_step(sync_job):
    code, output, seconds, out = sync_job
    assert code == 0, output
    assert seconds < 80, f"the job took {seconds:.0f}s"
    assert "[worker 0]" in output and "[worker 1]" in output
    a, b = results(out)
    assert {a["rank"], b["rank"]} == {0, 1} and a["num_workers"] == 2
    assert a["param_digest"] == b["param_digest"], "workers ended with different parameters"
    assert a["trace"] == b["trace"], "workers' parameters differed after some step"
    assert a["steps"] == b["steps"] > 0
    assert a["buckets"] == b["buckets"], "a step ran different buckets on the two workers"
    for epoch in ("0", "1"):
        both = sorted(a["seen"][epoch] + b["seen"][epoch])
        assert both == list(range(40)), f"epoch {epoch}: not every example exactly once"
        assert not set(a["seen"][epoch]) & set(b["seen"][epoch])
    # Only rank 0 writes the checkpoint; it holds the last multiple of 2 steps.
    state = ckpt.load(str(out / "run" / ckpt.FILENAME))
    assert state.meta["global_step"] == a["steps"] - a["steps"] % 2


def test_a_dead_worker_fails_the_job_fast_and_the_checkpoint_resumes(sync_job, tmp_path):
    run = tmp_path / "run"
    code, output, seconds = run_job(tmp_path / "died", *TRAIN, "--run-dir", run,
                                    "--checkpoint-every", 2, "--die-at-step", 5,
                                    "--die-rank", 1)
    assert code == 3, output
    # Start-up included (several seconds on a loaded 2-core machine); a hang would hit the
    # launcher's --timeout of 90 s instead.
    assert seconds < 60, f"the launcher took {seconds:.0f}s to notice"
    assert "failed with exit code 3; stopping the 3 other running process(es)" in output
    assert "job failed: worker" in output
    state = ckpt.load(str(run / ckpt.FILENAME))
    assert state.meta["global_step"] == 4
    assert (state.meta["loader"]["epoch"], state.meta["loader"]["step"]) == (0, 4)

    # Single process, as rank 0 of the same 2-shard plan: continues from step 4.
    alone = run_single(tmp_path / "alone", *TRAIN, "--run-dir", run, "--resume",
                       "--num-shards", 2, "--shard-index", 0, "--max-steps", 6)
    assert (alone["resumed_at"], alone["steps"], alone["steps_this_run"]) == (4, 6, 2)

    # The whole job resumed from it ends where the uninterrupted one did.
    code, output, _ = run_job(tmp_path / "resumed", *TRAIN, "--run-dir", run, "--resume")
    assert code == 0, output
    resumed = results(tmp_path / "resumed")
    reference = results(sync_job[3])
    assert [r["resumed_at"] for r in resumed] == [4, 4]
    assert resumed[0]["steps"] == reference[0]["steps"]
    # Exact: same parameters at step 4, same batches after it, and a sum of two gradients
    # does not depend on which arrives first.
    assert {r["param_digest"] for r in resumed} == {reference[0]["param_digest"]}


def test_mismatched_plans_fail_on_every_worker(tmp_path):
    code, output, seconds = run_job(tmp_path, *TRAIN, "--odd-batch-size", 3)
    assert code == 1, output
    assert seconds < 60
    assert output.count("PlanMismatchError: the 2 workers of this dist_sync job") >= 1
    assert "plan.batch_sizes: rank 0 [4, 4, 4], rank 1 [3, 3, 3]" in output
    assert not os.path.exists(tmp_path / "worker-0.json")


def test_dist_async_runs_the_same_schedule(tmp_path):
    code, output, _ = run_job(tmp_path, "--kvstore", "dist_async", *TRAIN)
    assert code == 0, output
    a, b = results(tmp_path)
    assert a["steps"] == b["steps"] and a["buckets"] == b["buckets"]
    assert sorted(a["seen"]["0"] + b["seen"]["0"]) == list(range(40))
