"""Intra-op threads chosen by measuring, not inherited (``threads=auto``, the default).

PyTorch starts with one intra-op thread per physical core. On a machine that another process is also
using (a second experiment, a parallel sweep, a browser), a step split over every core waits at each
operation's barrier for the thread whose core the other process holds: measured on 2 cores beside
one other CPU-bound training, a 2x256 LSTM step ran 22x slower with two threads than with one. Which
count is fastest depends on the model and on the load at that moment, so it is measured:

- ``ThreadTuner`` times the first training steps (after ``WARMUP`` untimed ones, at one thread) with each
  candidate count (one thread, then doubling up to the available threads), ``STEPS`` batches a count
  and round, in interleaved rounds so that a change of load during the trial weighs on
  every candidate alike, and keeps the count with the lowest median time per batch, but for a near tie:
  a count below the largest must beat it by more than ``MARGIN`` when the machine had a free core for
  every thread. Idle, a small model's training step
  takes about as long at one thread as at two (matrix factorisation: 3.2 against 3.1 ms), and a coin
  flip then chose one thread in a run of four; its validation and test passes, whose larger batches
  do use both cores, ran slower, and the whole epoch 1.44x a plain loop's against 1.27x at two threads.
  On a busy machine the fastest count is kept, however close: there more threads wait on cores other
  processes hold and slow those processes too (a CNN beside another run: 164 ms a batch at two
  threads against 135 at one, and the margin kept two). Whether the machine was busy is read from
  the CPU time every process used during the trial less this one's (Linux's /proc/stat); where that
  cannot be read, the margin applies. One thread was 2 to 20 times faster there, and a count ``CLEAR``
  times slower than the best after a round is not timed in the rounds left (one round then decides),
  and one whose steps in a round (two or more) each took ``ABANDON`` times the best is left before the
  round ends.
  The trial is counted in batches, not Lightning steps: with ``steps_per_execution`` K batches a step,
  a trial of steps lasted K times as long (a CNN beside another run was still in it 20 s in).
- Counts the machine has no room for are not timed at all. The trial's first steps, at one thread,
  last at least ``LOAD_PIECE`` seconds, and the load read over them says how many cores other
  processes hold; a count needing more than ``BUSY_CORES`` beyond the free ones is left out (on 2 cores
  beside another run: two threads, whose steps took 2.3x a one-thread step for a CNN, 20x for an LSTM).
  Where the load cannot be read, every count is timed.
- It then watches the median time per batch over a window of steps; when it drifts by more than
  ``DRIFT`` times from what the choice was made with (the load came or went), the trial is run again.
  It also watches the load itself: when the cores other processes keep busy differ by ``LOAD_SHIFT``
  from what they were during the trial, in two readings ``LOAD_EVERY`` seconds long in a row, the
  trial is run again. A process that ran one thread beside another on two cores takes as long a step
  when the other one ends, so no drift shows that the second core is free again; the load does.
- After a trial on a busy machine (or where the load cannot be read) it also runs again ``RECHECK``
  seconds after a trial that chose a count, and twice as long after each one that kept it, up to
  ``RECHECK_MAX``: two runs started together time each other's trials (one timed two threads while
  the other ran one, and kept two for the rest of its run), which no change of load would show. A
  recheck costs a round of batches at the other counts; a machine with room for every thread during
  the trial needs none (a load that comes shows in the reading and in the step time).
- A new count makes the batches' time different, so ``steps_per_execution=auto`` (zoo.tasks.execution)
  is asked to measure its K again.

``threads=N`` fixes the count (no trial), and so does ``trainer.deterministic=true`` for ``auto``: the
count a sum is split over changes its rounding, so a deterministic run keeps PyTorch's count (the
available threads) rather than one the load of the moment chose, and a resumed run repeats an
uninterrupted one bit for bit. The choice, the measured times and the number of trials are
in metrics.json (``threads``) and the console's summary.
"""

from __future__ import annotations

import os
import statistics
import time

import lightning as L
import torch
from typing_extensions import override

from zoo import compat

AUTO = "auto"
WARMUP = 3  # training steps not timed at the start of a fit (allocation, lazy initialisation, cold caches)
STEPS = 4  # timed batches per candidate and round (at least one step)
ROUNDS = 3  # interleaved rounds of every candidate
SETTLE_S = 0.02  # after a change of count, a first step shorter than this is not timed (thread pool warm-up)
WINDOW = 24  # steps in the moving median that watches for drift
CLEAR = 1.5  # after a round, a count this many times slower than the best so far is not timed again
ABANDON = 2.0  # within a round, a count whose steps so far (two or more) each took this many times the best is left
MARGIN = 0.2  # on a machine with free cores, fewer threads are kept only when this share faster than more
BUSY_CORES = 0.5  # other processes using this much of the cores the largest count needs make the machine busy
DRIFT = 1.6  # a moving median this many times above or below the chosen one starts a new trial
MIN_GAP = 2.0  # seconds: a trial does not start again sooner than this many trials' time after the last
RECHECK = 10.0  # seconds: the trial runs again this long after one that chose a new count, ...
RECHECK_MAX = 480.0  # ... then twice as long after each that keeps the count, up to this
LOAD_EVERY = 2.0  # seconds of training steps (validation left out) a reading of the other processes' load spans
LOAD_PIECE = 0.25  # seconds: /proc/stat is read at most this often (about 30 us a read)
LOAD_SHIFT = 0.5  # cores: other processes' load this far from the trial's, twice in a row, starts a trial


def available_threads(processes: int = 1) -> int:
    """The intra-op threads one of ``processes`` processes sharing this machine may use: PyTorch's
    default (one per physical core, or what OMP_NUM_THREADS says) divided among them."""
    return max(1, torch.get_num_threads() // max(1, processes))


def candidates(most: int) -> list[int]:
    """``most``, then halves of it down to one: [8, 4, 2, 1], [2, 1], [1]. The trial times them from
    the last (one thread: the fastest on a busy machine, and its steps the cheapest to spend there)."""
    counts = [most]
    while counts[-1] > 1:
        counts.append(counts[-1] // 2)
    return counts


def parallel_processes() -> int:
    """How many processes of this program share the machine's cores by the launcher's own settings: a
    joblib launcher's ``n_jobs`` (Hydra's config of the running job), else 1. DDP on CPU divides the
    threads itself (zoo/run/ddp.py); DataLoader workers run with one thread each (PyTorch's default)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
    except (ImportError, ValueError):  # not under Hydra (a notebook, a test), or no config set
        return 1
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n_jobs = launcher.get("n_jobs")
    cores = os.cpu_count() or 1
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    return min(cores, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)  # joblib: -1 is every core


def choose_count(measured: dict[int, float], margin: float = MARGIN) -> int:
    """The thread count to keep from the median seconds per batch of each: the fastest, unless a
    larger count is within ``margin`` of it (then the largest such count: near a tie, more threads
    also speed up what the trial did not time, the validation and test passes)."""
    fastest = min(measured.values())
    return max(c for c, t in measured.items() if t * (1 - margin) <= fastest)


def cpu_seconds() -> tuple[float, float, int] | None:
    """(CPU seconds every process on this machine has used, those of this process, the cores) now;
    None where the machine's total cannot be read (it is Linux's /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
        fields = [int(v) for v in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
        cores = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    if len(fields) < 8 or cores < 1:
        return None
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and waiting for input/output (steal is taken)
    return busy / ticks, time.process_time(), cores


def crowded(count: int, cores: int, others: float) -> bool:
    """Whether ``count`` threads need more than ``BUSY_CORES`` beyond the cores ``others`` (cores other
    processes keep busy) leave free on a machine of ``cores``."""
    return cores - others < count - BUSY_CORES


def other_cpu_seconds(start: tuple[float, float, int] | None, end: tuple[float, float, int] | None):
    """The CPU seconds other processes used between two ``cpu_seconds`` readings (None without both)."""
    if start is None or end is None:
        return None
    return max(0.0, (end[0] - start[0]) - (end[1] - start[1]))


class ThreadTuner(L.Callback):
    """Sets torch's intra-op threads for training: fixed (``threads=N``) or measured (``auto``)."""

    def __init__(self, requested: int | str = AUTO, processes: int | None = None, deterministic: bool = False):
        self.requested = requested
        self.processes = processes
        self.deterministic = deterministic  # auto keeps the available count: no trial, no drift
        self.available = 1
        self.chosen: int | None = None
        self.trials = 0  # how many times the counts were measured
        self.measured: dict[int, float] = {}  # seconds per batch of each count, in the last trial
        self._rounds: list[list[int]] = []  # the counts still to time in this trial, round by round
        self._alive: set[int] = set()
        self._times: dict[int, list[float]] = {}
        self._warmup = 0  # untimed steps left at the start of the fit
        self._settling = False  # the first step after a change of count
        self._last: tuple[float, int] | None = None  # (time, batches) at the end of the previous step
        self._window: list[float] = []
        self._reference: float | None = None  # the moving median the current choice was made with
        self._trial_started = 0.0
        self._trial_ended = 0.0
        self._trial_seconds = 0.0
        self._batches_left = 0  # batches still to time at the current count in this round
        self._this_round: list[float] = []  # seconds per batch of its steps so far
        self._recheck = RECHECK  # seconds from the end of a trial to the next
        self._saved: int | None = None
        self._cpu_at_start: tuple[float, tuple[float, float, int] | None] = (0.0, None)  # (time, cpu_seconds())
        self.others: float | None = None  # cores other processes kept busy during the last trial
        self._busy = False  # the last trial saw other processes hold the cores its largest count needs
        self._load_mark: tuple[float, tuple[float, float, int] | None] | None = None  # (time, cpu_seconds())
        self._load_seconds = 0.0  # training time the current reading has summed so far ...
        self._load_cpu = 0.0  # ... and the CPU seconds other processes used in it
        self._load_shifts = 0  # readings in a row whose load differed from the trial's
        self._load_read = False  # this trial's first steps have read the load (or cannot)
        self.not_timed: list[int] = []  # counts the last trial left out: no free core for each thread

    @property
    def auto(self) -> bool:
        return self.requested == AUTO and not self.deterministic

    @override
    def on_fit_start(self, trainer, pl_module) -> None:
        self._saved = torch.get_num_threads()
        processes = self.processes if self.processes is not None else parallel_processes()
        self.available = available_threads(processes)
        if not self.auto:
            self.chosen = self.available if self.requested == AUTO else int(self.requested)
            torch.set_num_threads(self.chosen)
            return
        self.chosen = self.available
        torch.set_num_threads(self.chosen)
        if self.available > 1:
            # The first steps of a fit are slow whatever the count: timed, they made the count tried
            # first (every thread) look slower, and a 4 ms step chose one thread on an idle machine in
            # 6 runs of 10, 1.3x slower than with two (bench_train.py --model mf).
            self._start_trial(warmup=WARMUP)

    @override
    def on_fit_end(self, trainer, pl_module) -> None:
        self._rounds = []  # validation and test after the fit keep the chosen count

    def summary(self) -> dict:
        """metrics.json's ``threads``."""
        return {
            "requested": self.requested,
            **({"fixed_by": "trainer.deterministic"} if self.requested == AUTO and self.deterministic else {}),
            "available": self.available,
            "chosen": self.chosen,
            "trials": self.trials,
            "batch_ms": {str(k): round(v * 1e3, 3) for k, v in sorted(self.measured.items(), reverse=True)},
            **({"other_cores": round(self.others, 2)} if self.others is not None else {}),
            **({"not_timed": self.not_timed} if self.not_timed else {}),
        }

    # ---- timing ---------------------------------------------------------------------------------

    def _start_trial(self, warmup: int = 0) -> None:
        counts = candidates(self.available)[::-1]  # one thread first: [1, 2, 4, ...]
        self._rounds = [list(counts) for _ in range(ROUNDS)]  # interleaved: 1, 2 | 1, 2 | 1, 2
        self._alive = set(counts)  # the counts not yet left as clearly slower
        self._times = {c: [] for c in counts}
        self._trial_started = time.perf_counter()
        self._cpu_at_start = (self._trial_started, cpu_seconds())
        self._window = []
        self._warmup = warmup
        self._load_read = False
        self.not_timed = []
        self._switch(counts[0])

    @property
    def in_trial(self) -> bool:
        return bool(self._rounds)

    def _switch(self, count: int) -> None:
        self._settling = count != torch.get_num_threads()
        torch.set_num_threads(count)
        self._batches_left = STEPS
        self._this_round = []

    @override
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = None
        self._load_mark = None  # the load is read over training steps only (see _load_shifted)

    @override
    def on_validation_start(self, trainer, pl_module) -> None:
        self._last = None  # the time of a validation is not a training step's
        self._load_mark = None

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.auto or self.available <= 1:
            return
        now, batches = time.perf_counter(), compat.batches_that_stepped(trainer)
        last, self._last = self._last, (now, batches)
        if last is None or batches <= last[1]:
            return
        if self.in_trial:
            self._time_trial_step(now - last[0], batches - last[1], trainer)
        else:
            self._watch((now - last[0]) / (batches - last[1]))

    def _time_trial_step(self, seconds: float, batches: int, trainer) -> None:
        """One training step of ``batches`` batches in ``seconds`` at the count being timed."""
        if self._warmup > 0:
            self._warmup -= 1
            if self._warmup == 0:  # the load is read from here: not the fit's start (sanity check, workers starting)
                self._cpu_at_start = (time.perf_counter(), cpu_seconds())
            return
        if self._settling:
            self._settling = False
            if seconds < SETTLE_S:  # a thread pool starting weighs on a short step; on a long one it is noise
                return
        count = self._rounds[0][0]
        self._times[count].append(seconds / batches)
        self._this_round.append(seconds / batches)
        self._batches_left -= batches
        if self._batches_left <= 0 and not self._load_read and not self._read_trial_load():
            return  # one thread a while longer: the load is read over LOAD_PIECE seconds at least
        if self._batches_left <= 0:
            self._rounds[0].pop(0)
        elif self._hopeless(count):
            self._drop({count})
        else:
            return
        if not self._rounds[0]:  # a round has ended: every candidate left in it timed as often
            self._rounds.pop(0)
            self._drop_clear_losers()
        # One count left is the choice (its median so far is the reference); so is the best after the last round.
        if len(self._alive) > 1 and self._rounds:
            self._switch(self._rounds[0][0])
        else:
            self._rounds = []
            self._decide(trainer)

    def _read_trial_load(self) -> bool:
        """After the trial's first count (one thread) has had its steps: False while they have lasted
        less than ``LOAD_PIECE`` seconds (too short a reading: /proc/stat counts in 10 ms ticks), else
        True, with the counts that need more than ``BUSY_CORES`` beyond the cores other processes left
        free dropped untimed (``not_timed``). Steps at such a count wait at every operation for a core
        another process holds (a loaded CNN's took 2.3 one-thread steps' time, at the trial and at every
        recheck)."""
        start, reading = self._cpu_at_start
        now = time.perf_counter()
        if reading is not None and now - start < LOAD_PIECE:
            return False
        self._load_read = True
        end = cpu_seconds()
        others = self._others_since_mark(now, end)
        if others is None:
            return True
        no_room = {c for c in self._alive if c > 1 and crowded(c, end[2], others)}
        self.not_timed = sorted(no_room)
        self._drop(no_room)
        return True

    def _others_since_mark(self, now: float, end: tuple[float, float, int] | None) -> float | None:
        """The cores other processes kept busy from the trial's mark (``_cpu_at_start``) to ``now``,
        ``end`` the ``cpu_seconds`` reading then; None where the load cannot be read."""
        start, reading = self._cpu_at_start
        used = other_cpu_seconds(reading, end)
        return used / (now - start) if used is not None and now > start else None

    def _hopeless(self, count: int) -> bool:
        """The steps of this round at ``count``, two or more, each took ``ABANDON`` times the best
        median of another count: two runs that both time two threads at once on two cores wait 3.5x as
        long a batch as at one, and the round's other batches would only add to that. (One slow step
        may be a burst of load, or the step that writes the logs.)"""
        others = [statistics.median(t) for c, t in self._times.items() if c != count and t]
        return len(self._this_round) >= 2 and bool(others) and min(self._this_round) > ABANDON * min(others)

    def _drop_clear_losers(self) -> None:
        """After a round, a count whose median so far is ``CLEAR`` times the best's is not timed again:
        on a busy machine a step at every thread can take 20 times as long, and two more rounds of
        it would spend most of a short run's first minute on the trial. A burst on some of one
        round's steps does not move a median that far, and a count dropped by one is timed again at
        the next trial (``RECHECK``)."""
        medians = {c: statistics.median(t) for c, t in self._times.items() if t}
        best = min(medians.values())
        self._drop({c for c, m in medians.items() if m > CLEAR * best})

    def _drop(self, losers: set[int]) -> None:
        """``losers`` are not timed again in this trial (their times so far stay in it)."""
        self._alive -= losers
        self._rounds = [[c for c in r if c not in losers] for r in self._rounds]

    def _decide(self, trainer) -> None:
        self.measured = {c: statistics.median(t) for c, t in self._times.items() if t}
        now = time.perf_counter()
        end = cpu_seconds()
        self.others = self._others_since_mark(now, end)
        # Busy: other processes held more than BUSY_CORES of the cores the largest count would use
        # (timed or not: a count left untimed for want of cores makes the machine busy too).
        self._busy = self.others is not None and crowded(max(self._times), end[2], self.others)
        best = choose_count(self.measured, margin=0.0 if self._busy else MARGIN)
        changed = best != self.chosen or self.trials == 0
        # Look again later, less often each time the count is kept.
        self._recheck = RECHECK if changed else min(2 * self._recheck, RECHECK_MAX)
        self.chosen = best
        self.trials += 1
        torch.set_num_threads(best)
        self._reference = self.measured[best]
        self._trial_ended = now
        self._trial_seconds = self._trial_ended - self._trial_started
        self._last = None  # the next step starts at the new count: not timed against the trial's
        self._load_mark, self._load_seconds, self._load_cpu, self._load_shifts = None, 0.0, 0.0, 0
        if changed:
            recalibrate = getattr(getattr(trainer.lightning_module, "execution", None), "recalibrate", None)
            if callable(recalibrate):
                recalibrate()

    def _watch(self, per_batch: float) -> None:
        now = time.perf_counter()
        since = now - self._trial_ended
        blind = self.others is None or self._busy  # see the module docstring: when rechecks run unasked
        if self._load_shifted(now) or (blind and since >= self._recheck):
            self._start_trial()
            return
        self._window.append(per_batch)
        if len(self._window) < WINDOW:
            return
        self._window = self._window[-WINDOW:]
        median = statistics.median(self._window)
        ref = self._reference
        if ref is None or ref <= 0:
            return
        drifted = median > DRIFT * ref or median < ref / DRIFT
        # A trial costs steps at slower counts: not again sooner than a few trials' time later.
        if drifted and since > max(MIN_GAP, 10 * self._trial_seconds):
            self._start_trial()

    def _load_shifted(self, now: float) -> bool:
        """Whether the other processes' load has differed from the last trial's by ``LOAD_SHIFT``
        cores in two readings of ``LOAD_EVERY`` seconds in a row (one may be a burst). A reading sums
        pieces of training between validations and epochs' starts (which reset the mark): an MLP's
        epoch lasts under two seconds, and a validation's own loader workers are not the load the
        training shares the cores with."""
        if self.others is None:
            return False
        if self._load_mark is None:
            self._load_mark = (now, cpu_seconds())
            return False
        start, reading = self._load_mark
        if now - start < LOAD_PIECE:
            return False
        self._load_mark = (now, cpu_seconds())
        piece = other_cpu_seconds(reading, self._load_mark[1])
        if piece is None:
            return False
        self._load_seconds += now - start
        self._load_cpu += piece
        if self._load_seconds < LOAD_EVERY:
            return False
        others = self._load_cpu / self._load_seconds
        self._load_seconds, self._load_cpu = 0.0, 0.0
        shifted = abs(others - self.others) >= LOAD_SHIFT
        self._load_shifts = self._load_shifts + 1 if shifted else 0
        return self._load_shifts >= 2

    @override
    def on_test_start(self, trainer, pl_module) -> None:
        if self.chosen is not None:  # the test after the fit runs with the count chosen for it
            torch.set_num_threads(self.chosen)

    @override
    def teardown(self, trainer, pl_module, stage: str) -> None:
        # The process (a notebook, a sweep's next job) gets back the count it had: each fit chooses anew.
        if self._saved is not None:
            torch.set_num_threads(self._saved)
