"""Run directories and their `run.json` manifests: lineage, status, stage times and device-hours.

Every command writes one run directory under the runs root. The manifest is rewritten atomically
(temp file + rename, the temp name unique per host and process) at every change, by the attempt's
main process only, so a reader never sees a half-written file, and a run that raises, is interrupted
or is terminated is recorded as `failed`, never `completed`. A run the study executor created but
has not started yet is `queued`.

An attempt owns its run through an exclusive `flock` on `<run>/run.lock`, held for the attempt's
life; the kernel drops it when the process dies, however it dies. `running` means "the lock is
held": a manifest that says `running` while nobody holds the lock belongs to a process that was
killed (SIGKILL, OOM killer, power loss, a lost node), and is read as `failed` with its last attempt
`killed`, resumable from any machine. pid, host, boot id and process start time are kept for display
only: pids repeat across PID namespaces and nodes, and host names repeat or change across
containers. A reader probes the lock with a shared lock, held only while it re-reads the manifest.
flock is shared between machines where the filesystem shares lock semantics (local disks, NFSv4,
Lustre mounted with `-o flock`).

The ledger reads what it can: a manifest that is not valid JSON or not shaped like one is named on
stderr, one line each, and left out, so one bad file never stops a command; `Ledger.check` lists
every problem under the root with what to do about it.

Two costs are recorded per attempt: wall seconds x devices (`device_hours`, the GPU-hours of a
dedicated allocation) and the CPU time its processes used (`cpu_seconds`: user + system of this
process and every descendant, live or reaped), which does not grow when other load shares the cores.
The package holds one concept per module: `files` (atomic writes), `locks` (flock), `manifest` (the
file's names and shape), `owner` (who runs an attempt), `costs` (devices and CPU time), `run` (`Run`),
`store` (`Ledger`) and `attempt`. The signal handling a process that owns runs needs lives in
`m2rl.signals`; its names are also importable from here, as before.
"""

from m2rl.ledger.attempt import attempt
from m2rl.ledger.costs import Device, process_tree_cpu_seconds
from m2rl.ledger.files import replace_dir, temp_sibling, write_json_atomic, write_text_atomic
from m2rl.ledger.locks import lock_held, try_lock, unlock
from m2rl.ledger.manifest import (
    LOCK,
    MANIFEST,
    METRICS,
    PROGRESS_DIR,
    STATUSES,
    ManifestError,
    Problem,
    read_manifest,
)
from m2rl.ledger.owner import describe_owner
from m2rl.ledger.run import CLAIM_WAIT_S, Run
from m2rl.ledger.store import STALE_TEMP_S, Ledger, warn_once
from m2rl.provenance import cpu_model as cpu_name
from m2rl.signals import Terminated, raise_lost_signal, signal_behind, sigterm_raises
from m2rl.specs import MODEL_KINDS, RUN_KINDS, TRAINING_KINDS

__all__ = [
    "CLAIM_WAIT_S",
    "LOCK",
    "MANIFEST",
    "METRICS",
    "MODEL_KINDS",
    "PROGRESS_DIR",
    "RUN_KINDS",
    "STALE_TEMP_S",
    "STATUSES",
    "TRAINING_KINDS",
    "Device",
    "Ledger",
    "ManifestError",
    "Problem",
    "Run",
    "Terminated",
    "attempt",
    "cpu_name",
    "describe_owner",
    "lock_held",
    "process_tree_cpu_seconds",
    "raise_lost_signal",
    "read_manifest",
    "replace_dir",
    "sigterm_raises",
    "signal_behind",
    "temp_sibling",
    "try_lock",
    "unlock",
    "warn_once",
    "write_json_atomic",
    "write_text_atomic",
]
