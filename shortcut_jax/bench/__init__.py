"""How fast the kit trains many models, next to what a user would pick instead; and how long the
kit's own commands take, start to finish.

    shortcut-jax bench [--out runs/bench]        # about an hour on 2 CPU cores with torch
    shortcut-jax bench --quick                   # seconds: tiny sizes, agreement check
    shortcut-jax bench --sections process        # only the whole-process times (minutes)

Sections (--sections, default all; --quick skips scaling, memory and store):
  grads    one gradient and one SGD step, manual_grad vs jax.grad, jitted, over several (n, d, h);
  compile  compile time of a sweep shape group (Executor.init and .run) and of the sweep's draws;
  configs  configurations A, B, C (float32, full-batch SGD, all models on the same data): the
           kit's sweep machinery (sweep.Executor, one call per block, as sweep.run_chunk) vs the
           peers of shortcut_jax.peers (NumPy, plain jit(vmap(scan)) on one device and sharded
           over every device, Python loops of jitted calls, PyTorch when the `bench` extra is
           installed), all from the same initial parameters, final losses checked to agree;
  scaling  the kit's time against M, n and h (log-log PNG), model-steps/s and GFLOP/s against a
           measured matmul peak (full run only);
  memory   peak memory of a chunked sweep at M = 1k, 4k, 16k (full run only);
  process  whole commands as a user runs them: `shortcut-jax sweep` (1024 models, 200 steps) and
           `shortcut-jax compare` (the headline experiment), each in a fresh Python process,
           with a cold (empty) and a warm persistent compilation cache, rounds interleaved;
           wall time measured around the process, split into start-up (Python and the
           imports, until the command's clock starts), the phases of its --timings (data,
           draws, compile, train, write, report) and the rest;
  store    whole-process time and peak memory of a sweep, loading its table and its report
           against the number of runs (1k, 10k, 100k; log-log PNG store.png);
  network  configuration D (the network family: depth 3, tanh, residual+shortcut): the kit's
           engine with the hand-written gradient, the same engine with jax.grad, and
           jit(vmap(scan)) with jax.grad, sharded over the same devices (full run only).

Timing (configs): every implementation runs in a process of its own (a worker started with
`python -m shortcut_jax.cli bench --serve IMPL --cfg ...`), which compiles / warms up once (that
time is reported apart as "compile s") and then times one call per request. The workers of a
configuration stay alive together and are asked for one repeat each in turn, A B C A B C ...,
--reps rounds, so that the machine's drift moves every implementation alike; median and spread
of the rounds. --quick runs everything in this process instead (same interleaving).

Equal footing (configs): the kit ("kit") shards its runs over one CPU device per core
(--cpu-devices to change) and also runs on one device in the same run ("kit_1dev", a worker with
--cpu-devices 1); plain jit(vmap(scan)) runs on one device ("jax_naive") and sharded over the
same devices as the kit ("jax_naive_sharded", jax.sharding over a "models" axis); NumPy and
PyTorch use their own threads, each as installed and with tuned malloc (TUNED_MALLOC). Every row
records its threads and devices (torch threads, BLAS threads, OMP/MKL/OpenBLAS settings, JAX
devices used of those present), in results.json and in the table. The benchmark never reads the
persistent compilation cache except in the process section, where that is what is measured.

Writes results.md and results.json (machine, versions, devices, precision) to --out.
FLOPs of one SGD step of one model, counted analytically (multiply-add = 2):
  forward 2nhd + 2nh + (2nd shortcut) ; backward 2nh + 2nhd + 2nh (+ 2nd) ; ~ 4nhd + 6nh (+ 4nd).

The package, by what each module does: configs (configurations, implementations, commands,
constants), kit (the kit's sweep machinery as an implementation), workers (one implementation
in this process or in a worker process; interleaved rounds), sections (gradients, compile
times, scaling, memory), processes (whole commands, cold and warm cache), store (sweep, load
and report against the runs), network (configuration D), tables (results.md),
main (the entry point; its flags are in shortcut_jax.cli).
"""

from shortcut_jax.bench.configs import (
    CONFIGS,
    IMPLS,
    JAX_PEERS,
    KIT_IMPLS,
    MALLOC_IMPLS,
    PEER_IMPLS,
    PROCESS_COMMANDS,
    PROCESS_PHASES,
    PROTOCOL,
    QUICK_SECTIONS,
    SECTIONS,
    THREAD_ENV,
    TORCH_IMPLS,
    config_list,
)
from shortcut_jax.bench.main import main
from shortcut_jax.bench.processes import process_times, run_process
from shortcut_jax.bench.tables import markdown
from shortcut_jax.bench.workers import (
    Runner,
    Worker,
    WorkerError,
    config_entries,
    serve,
    time_config,
    timed_rounds,
)

__all__ = ["CONFIGS", "IMPLS", "JAX_PEERS", "KIT_IMPLS", "MALLOC_IMPLS", "PEER_IMPLS",
           "PROCESS_COMMANDS", "PROCESS_PHASES", "PROTOCOL", "QUICK_SECTIONS", "SECTIONS",
           "THREAD_ENV", "TORCH_IMPLS", "Runner", "Worker", "WorkerError", "config_entries",
           "config_list", "main", "markdown", "process_times", "run_process", "serve",
           "time_config", "timed_rounds"]
