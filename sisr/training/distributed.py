"""Training on several workers with `tf.distribute.MultiWorkerMirroredStrategy`.

Every worker runs the same command with the same `--outdir` on a shared filesystem. The
cluster comes from `TF_CONFIG` (cluster + task) or, in a Slurm job step, from
`SlurmClusterResolver`. Each worker mirrors over all its local GPUs (else its CPU).

- The strategy must exist before TensorFlow runs any op (it configures the collectives at
  start-up): the CLIs create it first (`multi_worker_strategy`, once per process).
- One run directory: the chief (task `chief`, else `worker` 0) creates
  `OUTDIR/<its time stamp>-<name>[-N]` and broadcasts the stamp and suffix to the other
  workers through a collective, so no name depends on another worker's clock.
- Only the chief writes the run directory; every other worker runs the same callbacks
  into a private temporary directory that is removed at the end (the Keras multi-worker
  pattern: every worker takes part in each save, so saves that need collectives cannot
  hang), see `output_dir`.
"""

import contextlib
import datetime
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time

import tensorflow as tf

from sisr.errors import SisrError
from sisr.training.config import ConfigError

log = logging.getLogger(__name__)

_STRATEGY = None
_SLURM_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_TASKS",
                    "SLURM_STEP_TASKS_PER_NODE")
# What a collective raises when another worker stopped (its heartbeats or connection lost).
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                      tf.errors.CancelledError, tf.errors.DeadlineExceededError)


class WorkerLost(SisrError, RuntimeError):
    """Another worker of a multi-worker run stopped, so this one cannot go on."""


class ClusterWaitError(SisrError, RuntimeError):
    """The other workers did not come within the cluster timeout, or the wait for them
    was interrupted."""


# Seconds a worker waits for all the others to start (`--cluster-timeout`), and between
# two messages that say whom it waits for.
CLUSTER_TIMEOUT = 600.0
WAIT_MESSAGE_EVERY = 5.0


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` whose `reduce` takes nested values and scalars.

    Keras 3's `fit` calls `reduce` on a `(x, y)` batch and with `axis=0` on the scalar
    per-replica logs of every batch; TensorFlow's collective strategy accepts neither.
    Each value is reduced on its own, a scalar across replicas only.
    """

    def reduce(self, reduce_op, value, axis=None):
        parent = super()

        def one(item):
            sample = item.values[0] if isinstance(item, tf.distribute.DistributedValues) \
                else item
            rank = getattr(getattr(sample, "shape", None), "rank", None)
            return parent.reduce(reduce_op, item, None if rank == 0 else axis)

        return tf.nest.map_structure(one, value)


def local_tf_configs(workers, host="127.0.0.1"):
    """`TF_CONFIG` values (JSON strings), one per worker, for `workers` processes on this
    machine on free ports: to try multi-worker training on one host (as the tests and
    `benchmarks/multiworker.py` do). A port may be taken again before a worker binds it."""
    import socket

    sockets = [socket.socket() for _ in range(workers)]
    try:
        for s in sockets:
            s.bind((host, 0))
        cluster = {"worker": [f"{host}:{s.getsockname()[1]}" for s in sockets]}
    finally:
        for s in sockets:
            s.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            for i in range(workers)]


def check_tf_config(text):
    """Raises ConfigError unless `text` (TF_CONFIG) names a cluster and this task in it.

    TensorFlow reads `[]`, `{}` or a misspelt "cluster" as a cluster of one, so each
    host would train alone, each writing its own run."""
    def bad(why):
        return ConfigError(f"--strategy multi-worker: TF_CONFIG is not a cluster: {why} "
                           "(see the README's multi-worker recipe)")

    try:
        config = json.loads(text)
    except ValueError:
        raise bad("not JSON") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise bad('expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                  '"worker", "index": N}}')
    cluster, task_ = config["cluster"], config.get("task")
    for job, addresses in cluster.items():
        if not (isinstance(addresses, list) and addresses
                and all(isinstance(a, str) and ":" in a for a in addresses)):
            raise bad(f'cluster job "{job}" must be a list of "host:port" addresses')
    if not any(job in cluster for job in ("chief", "worker")):
        raise bad('the cluster has no "chief" or "worker" job')
    if not isinstance(task_, dict) or task_.get("type") not in cluster:
        raise bad(f'"task" must name one of the cluster\'s jobs ({", ".join(cluster)}) as '
                  f"its type, got {task_!r}")
    index = task_.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or \
            not 0 <= index < len(cluster[task_["type"]]):
        raise bad(f'task index {index!r} is not one of 0..{len(cluster[task_["type"]]) - 1} '
                  f'of job "{task_["type"]}"')


def cluster_resolver():
    """The cluster of this job: `TF_CONFIG` if set, else the Slurm job step's.

    Raises ConfigError when neither describes a cluster.
    """
    if "TF_CONFIG" in os.environ:
        check_tf_config(os.environ["TF_CONFIG"])
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if all(os.environ.get(name) for name in _SLURM_VARIABLES):
        if "CUDA_VISIBLE_DEVICES" in os.environ or shutil.which("nvidia-smi"):
            return tf.distribute.cluster_resolver.SlurmClusterResolver()
        # A CPU-only node: the resolver's GPU allocation (nvidia-smi, and a step of GPUs
        # per task that must not be 0) is switched off.
        return tf.distribute.cluster_resolver.SlurmClusterResolver(
            gpus_per_node=1 << 16, gpus_per_task=1, auto_set_gpu=False)
    raise ConfigError("--strategy multi-worker: no cluster; set TF_CONFIG on every worker "
                      "(see the README's multi-worker recipe) or run as a Slurm job step "
                      "(srun)")


def check_single_process(strategy_name):
    """Raises ConfigError if TF_CONFIG describes a cluster of several workers while the
    strategy is a one-process one: every worker would train on its own."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        workers = sum(len(cluster.get(job, [])) for job in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError):
        return
    if workers > 1:
        raise ConfigError(f"--strategy {strategy_name}: TF_CONFIG describes a cluster of "
                          f"{workers} workers; use --strategy multi-worker (each worker then "
                          "mirrors over its local GPUs), or unset TF_CONFIG")


def _split_address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _peers(resolver):
    """(this worker's address, {"worker 1": address, ...} of the other workers)."""
    spec = resolver.cluster_spec().as_dict()
    own = spec[resolver.task_type][resolver.task_id]
    peers = {f"{job} {i}": address for job in ("chief", "worker")
             for i, address in enumerate(spec.get(job, [])) if address != own}
    return own, peers


def _reachable(address):
    """None if something listens at `address`, else why not (a few words)."""
    try:
        host, port = _split_address(address)
        with socket.create_connection((host, port), timeout=1.0):
            return None
    except socket.gaierror:
        return f"cannot resolve {address.rpartition(':')[0]}"
    except (OSError, ValueError):
        return "not listening"


class _Interrupted(Exception):
    pass


def _raise_interrupted(signum, frame):
    raise _Interrupted(signal.Signals(signum).name)


def wait_for_peers(resolver, timeout=CLUSTER_TIMEOUT, every=WAIT_MESSAGE_EVERY):
    """Waits, in Python, until every other worker of the cluster is listening.

    TensorFlow's own wait (in the strategy's start-up) blocks in C++ with no word, no
    end and no way to interrupt it; once all peers are up it is short. Meanwhile this
    worker listens on its own port, so that the others see it too; it says whom it waits
    for every `every` seconds, and SIGINT or SIGTERM end the wait.

    Raises ClusterWaitError naming the missing workers after `timeout` seconds, or when
    interrupted.
    """
    own, peers = _peers(resolver)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", _split_address(own)[1]))
    except OSError as err:
        listener.close()
        raise ClusterWaitError(f"multi-worker: cannot listen on this worker's address {own} "
                               f"({err.strerror or err}); is another run using it?") from None
    listener.listen(128)
    listener.setblocking(False)
    previous = {sig: signal.signal(sig, _raise_interrupted)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    missing = dict(peers)
    why = {}
    start = last = time.monotonic()
    try:
        while missing:
            with contextlib.suppress(OSError):
                while True:
                    listener.accept()[0].close()  # peers' probes
            for name, address in list(missing.items()):
                why[name] = _reachable(address)
                if why[name] is None:
                    del missing[name]
            if not missing:
                break
            now = time.monotonic()
            waiting = ", ".join(f"{n} ({missing[n]}: {why[n]})" for n in missing)
            if now - start > timeout:
                raise ClusterWaitError(
                    f"multi-worker: no answer after {timeout:g} s (--cluster-timeout) from "
                    f"{waiting}; start every worker with the same cluster")
            if now - last >= every:
                log.warning("multi-worker: waiting for %s (%.0f s of %g)", waiting,
                            now - start, timeout)
                last = now
            time.sleep(0.2)
    except _Interrupted as err:
        raise ClusterWaitError(f"multi-worker: stopped by {err} while waiting for "
                               f"{', '.join(missing)}") from None
    finally:
        listener.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("multi-worker: all %d workers are up", len(peers) + 1)


def multi_worker_strategy(cluster_timeout=CLUSTER_TIMEOUT):
    """The process's MultiWorkerMirroredStrategy, created on the first call, once every
    worker of the cluster is up (`wait_for_peers`, at most `cluster_timeout` seconds).

    Raises ConfigError if TensorFlow already ran an op (too late to create it) or the
    cluster cannot be resolved; ClusterWaitError if the other workers do not come.
    """
    global _STRATEGY
    if _STRATEGY is None:
        resolver = cluster_resolver()
        wait_for_peers(resolver, cluster_timeout)
        # TensorFlow's start-up blocks in C++, where Python's handlers never run: let
        # SIGINT and SIGTERM end the process there as they would any program.
        previous = {sig: signal.signal(sig, signal.SIG_DFL)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            _STRATEGY = _MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        except RuntimeError as err:
            if "program startup" not in str(err):
                raise
            raise ConfigError("--strategy multi-worker: TensorFlow was already running "
                              "when the strategy was requested; give --strategy "
                              "multi-worker on the command line") from None
        except ConfigError:
            raise
        except ValueError as err:  # a malformed TF_CONFIG
            raise ConfigError(f"--strategy multi-worker: bad cluster (TF_CONFIG): {err}") \
                from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        # TensorFlow logs every collective it builds at INFO level.
        tf.get_logger().setLevel(max(tf.get_logger().getEffectiveLevel(), logging.WARNING))
        log.info("multi-worker: %s %s of %d workers, %d replicas in sync",
                 *task(_STRATEGY), worker_count(_STRATEGY), _STRATEGY.num_replicas_in_sync)
    return _STRATEGY


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def task(strategy):
    """`(task_type, task_id)` of this process; `(None, None)` without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None
    return resolver.task_type, resolver.task_id


def worker_count(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, [])) for job in ("chief", "worker")) or 1


def is_chief(strategy):
    """True for the worker that writes the run directory (and for one-process runs):
    task `chief`, else `worker` 0."""
    if not is_multi_worker(strategy):
        return True
    task_type, task_id = task(strategy)
    if task_type in (None, "chief"):
        return True
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in jobs


def broadcast(strategy, values):
    """The chief's int64 `values`, on every worker (an all-reduce where only the first
    replica, the chief's, contributes)."""
    mine = tf.constant(values if is_chief(strategy) else [0] * len(values), tf.int64)

    def contribute():
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return context.all_reduce("sum", tf.where(first, mine, tf.zeros_like(mine)))

    result = strategy.experimental_local_results(strategy.run(contribute))[0]
    return [int(v) for v in result.numpy()]


def synchronize_batch_norm(model):
    """Makes every BatchNormalization layer of `model` (nested models included) normalise
    with the statistics of the global batch, as one process would, instead of each
    replica's share of it. Returns how many layers were changed."""
    import keras

    count = 0
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
        else:
            count += synchronize_batch_norm(layer)
    return count


def run_dir_path(outdir, name, stamp, n=1):
    """`OUTDIR/<stamp>-<name>`, with `-N` for the N-th run of that second."""
    base = os.path.join(outdir, f"{stamp}-{name}")
    return base if n == 1 else f"{base}-{n}"


def new_run_dir(outdir, name, strategy=None):
    """Creates `OUTDIR/YYYYmmdd-HHMMSS-<name>[-N]` (N makes it unique) and returns it.

    Under a multi-worker strategy the chief creates it and every worker returns the
    chief's path.
    """
    multi = strategy is not None and is_multi_worker(strategy)
    stamp = n = 0
    if not multi or is_chief(strategy):
        stamp = int(datetime.datetime.now().strftime("%Y%m%d%H%M%S"))
        n = 1
        while True:
            try:
                os.makedirs(run_dir_path(outdir, name, _format(stamp), n))
                break
            except FileExistsError:
                n += 1
    if multi:
        stamp, n = broadcast(strategy, [stamp, n])
    return run_dir_path(outdir, name, _format(stamp), n)


def _format(stamp):
    text = f"{stamp:014d}"
    return f"{text[:8]}-{text[8:]}"


@contextlib.contextmanager
def output_dir(run_dir, strategy):
    """The directory this process writes its run files to: `run_dir` on the chief, a
    private temporary directory (removed afterwards) on the other workers, whose reports
    of what they saved there are silenced (the chief reports).

    A collective that fails because another worker stopped raises WorkerLost.
    """
    multi = is_multi_worker(strategy)
    try:
        if is_chief(strategy):
            yield run_dir
        else:
            with _worker_dir(run_dir, strategy) as temp:
                yield temp
    except LOST_WORKER_ERRORS as err:
        if not multi:
            raise
        log.debug("collective failed: %s", err)
        raise WorkerLost(f"training stopped: a worker of the cluster stopped or cannot be "
                         f"reached ({type(err).__name__}); rerun every worker with --resume "
                         f"{run_dir}") from None


@contextlib.contextmanager
def _worker_dir(run_dir, strategy):
    task_type, task_id = task(strategy)
    temp = tempfile.mkdtemp(prefix=f"sisr-{task_type}{task_id}-")
    log.info("%s %s: the chief writes %s; this worker's copies go to %s (removed at the "
             "end)", task_type, task_id, run_dir, temp)
    reports = logging.getLogger("sisr.training")
    level = reports.level
    reports.setLevel(logging.WARNING)
    try:
        yield temp
    finally:
        reports.setLevel(level)
        shutil.rmtree(temp, ignore_errors=True)
