"""threads (zoo/tasks/threads.py): auto measures the candidate thread counts in interleaved rounds,
keeps the fastest and measures again when the step time drifts; a number is honoured; both are
recorded in metrics.json; steps_per_execution=auto chooses K from a statistic a burst does not move."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from zoo.tasks import threads as threads_module
from zoo.tasks.execution import ExecutionPlan
from zoo.tasks.threads import ThreadTuner, candidates, choose_count


class FakeMachine:
    """A clock and a trainer whose training batches take ``cost[threads]`` seconds, the cost given by
    the load at the moment (changed by the test)."""

    def __init__(self, monkeypatch, cost: dict[int, float], others: float = 0.0, cores: int = 2, readable=True):
        self.now = 0.0
        self.cost = cost
        self.threads = 2
        self.others = others  # cores other processes keep busy (a busy machine: about one of two)
        self.cores = cores
        self.own_cpu = 0.0
        self.others_cpu = 0.0
        self.calibrations = 0
        self.seconds_at: dict[int, float] = {}  # training time spent at each thread count
        loop = SimpleNamespace(_batches_that_stepped=0)
        plan = SimpleNamespace(recalibrate=self._recalibrate)
        self.trainer = SimpleNamespace(
            fit_loop=SimpleNamespace(epoch_loop=loop), lightning_module=SimpleNamespace(execution=plan)
        )
        monkeypatch.setattr(threads_module.time, "perf_counter", lambda: self.now)
        monkeypatch.setattr(threads_module.torch, "set_num_threads", self._set)
        monkeypatch.setattr(threads_module.torch, "get_num_threads", lambda: self.threads)
        monkeypatch.setattr(
            threads_module,
            "cpu_seconds",
            lambda: (self.own_cpu + self.others_cpu, self.own_cpu, self.cores) if readable else None,
        )

    def load(self, cost: dict[int, float], others: float) -> None:
        """Another process starts (``others`` about 1 of 2 cores) or ends (0): new costs per count."""
        self.cost, self.others = cost, others

    def _set(self, n: int) -> None:
        self.threads = n

    def _recalibrate(self) -> None:
        self.calibrations += 1

    def steps(self, tuner: ThreadTuner, n: int, batches: int = 1) -> None:
        """``n`` Lightning steps of ``batches`` batches each (steps_per_execution)."""
        for _ in range(n):
            seconds = batches * self.cost[self.threads]
            self.now += seconds
            self.seconds_at[self.threads] = self.seconds_at.get(self.threads, 0.0) + seconds
            self.own_cpu += seconds * min(self.threads, self.cores - self.others)
            self.others_cpu += seconds * self.others
            self.trainer.fit_loop.epoch_loop._batches_that_stepped += batches
            tuner.on_train_batch_end(self.trainer, None, None, None, 0)

    def run_for(self, tuner: ThreadTuner, seconds: float, batches: int = 1) -> None:
        end = self.now + seconds
        while self.now < end:
            self.steps(tuner, 1, batches)


def test_candidates_halve_down_to_one():
    assert candidates(8) == [8, 4, 2, 1]
    assert candidates(2) == [2, 1]
    assert candidates(1) == [1]


def test_auto_keeps_the_fastest_count_and_measures_again_when_the_load_changes(monkeypatch):
    machine = FakeMachine(monkeypatch, {2: 0.40, 1: 0.07}, others=1.0)  # loaded: two threads wait on each other
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    assert machine.threads == 1  # the trial starts at one thread (cheap on a busy machine, cold steps anyway)
    machine.steps(tuner, 40)
    assert tuner.chosen == 1 and machine.threads == 1
    assert tuner.trials == 1
    # Another process held one of the two cores during the one-thread steps: two threads were not
    # timed at all (their steps would wait on that core), and no step ran at two.
    assert tuner.measured == {1: pytest.approx(0.07)} and tuner.summary()["not_timed"] == [2]
    assert machine.seconds_at.get(2, 0.0) == 0.0
    assert machine.calibrations == 1  # steps_per_execution=auto measures K again at the new count

    # The other process ends: one thread is now slower than two; within RECHECK seconds a new trial
    # (the drift, or the recheck, whichever comes first) chooses two.
    machine.load({2: 0.01, 1: 0.018}, others=0.0)
    machine.steps(tuner, 100)
    assert tuner.trials == 1  # not at once: a trial costs steps at slower counts
    machine.run_for(tuner, threads_module.RECHECK)
    assert tuner.trials == 2
    assert tuner.chosen == 2 and machine.threads == 2
    assert machine.calibrations == 2
    summary = tuner.summary()
    assert summary["chosen"] == 2 and summary["trials"] == 2 and summary["requested"] == "auto"
    assert summary["batch_ms"] == {"2": pytest.approx(10.0), "1": pytest.approx(18.0)}
    assert summary["other_cores"] == pytest.approx(0.0)


def test_a_load_that_comes_starts_a_trial_before_the_next_recheck(monkeypatch):
    """Idle, the trial saw room for every thread: no recheck is needed while the load holds (a load
    that comes shows in the step time and in the reading). When one comes, a trial runs at once."""
    for readable, trials in ((True, 1), (False, 4)):
        machine = FakeMachine(monkeypatch, {2: 0.010, 1: 0.018}, readable=readable)  # idle: two threads
        tuner = ThreadTuner("auto", processes=1)
        tuner.on_fit_start(machine.trainer, None)
        # Where the load cannot be read, rechecks at about 10, 30 and 70 s keep two; the next is 80 s later.
        machine.run_for(tuner, 75)
        assert tuner.chosen == 2 and tuner.trials == trials
        machine.load({2: 0.40, 1: 0.07}, others=1.0)  # another run starts
        machine.run_for(tuner, 9)  # the moving median of 24 steps drifts (and the load shows): a trial at once
        assert tuner.chosen == 1 and machine.threads == 1 and tuner.trials == trials + 1


def test_a_core_freed_by_a_run_that_ends_is_taken_within_seconds(monkeypatch):
    """Beside another run one thread is fastest, and its step takes as long when that run ends: no
    drift shows the free core, but the other processes' CPU time does, two readings later."""
    machine = FakeMachine(monkeypatch, {2: 0.40, 1: 0.07}, others=1.0)
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.run_for(tuner, 100)  # trials at the start, about 10, 30 and 70 s: the next recheck is at 150 s
    assert tuner.chosen == 1 and tuner.trials == 4
    machine.load({2: 0.04, 1: 0.07}, others=0.0)  # the other run ends
    machine.run_for(tuner, 3 * threads_module.LOAD_EVERY)
    assert tuner.trials == 5 and tuner.chosen == 2 and machine.threads == 2
    assert tuner.summary()["other_cores"] == pytest.approx(0.0)
    # A burst of load in one reading is not a change of load.
    machine.load({2: 0.04, 1: 0.07}, others=1.0)
    machine.run_for(tuner, threads_module.LOAD_EVERY)
    machine.load({2: 0.04, 1: 0.07}, others=0.0)
    machine.run_for(tuner, 60)
    assert tuner.trials == 5


def test_a_near_tie_keeps_every_thread(monkeypatch):
    """Idle, a small model's step takes about as long at one thread as at two; keeping one then slowed
    the validation passes the trial does not time (matrix factorisation: 1.44x a plain loop, not 1.27x).
    One thread is kept only when it is clearly faster."""
    assert choose_count({2: 3.76, 1: 3.28}) == 2  # measured on mf: 13% apart, noise
    assert choose_count({2: 3.18, 1: 3.24}) == 2
    assert choose_count({2: 0.40, 1: 0.07}) == 1  # a busy machine
    assert choose_count({2: 0.013, 1: 0.010}) == 1  # 23% faster: more than the margin
    assert choose_count({8: 10.0, 4: 8.0, 2: 6.0, 1: 9.0}) == 2
    machine = FakeMachine(monkeypatch, {2: 0.0036, 1: 0.0033})
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.steps(tuner, 200)  # one thread for LOAD_PIECE seconds (76 steps: the load's reading), then rounds
    assert tuner.trials == 1 and tuner.chosen == 2 and machine.threads == 2
    assert tuner.summary()["other_cores"] == pytest.approx(0.0)


@pytest.mark.parametrize("others, chosen", [(0.0, 2), (0.3, 2), (1.0, 1), (0.7, 1)])
def test_on_a_busy_machine_the_fastest_count_is_kept_however_close(monkeypatch, others, chosen):
    """Beside another run a CNN batch took 164 ms at two threads and 135 at one: within the near-tie
    margin, so two were kept, slowing both runs. When other processes held a core during the trial
    (read from the machine's CPU time less this process's), there is no tie to protect: the fastest wins."""
    machine = FakeMachine(monkeypatch, {2: 0.164, 1: 0.135}, others=others)
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.steps(tuner, 40)
    assert tuner.trials == 1 and tuner.chosen == chosen and machine.threads == chosen
    assert tuner.summary()["other_cores"] == pytest.approx(others)


def test_on_eight_cores_the_margin_holds_while_the_largest_count_has_its_cores(monkeypatch):
    """Eight cores, four threads each (a joblib sweep of two jobs): the other job's four cores leave
    room for this one's four, so a near tie still keeps four; a fifth busy core makes the machine busy."""
    for others, chosen in ((4.0, 4), (5.0, 2)):
        machine = FakeMachine(monkeypatch, {4: 0.0100, 2: 0.0090, 1: 0.0130}, others=others, cores=8)
        machine.threads = 8  # PyTorch's count on 8 cores, halved for each of the two jobs
        tuner = ThreadTuner("auto", processes=2)
        tuner.on_fit_start(machine.trainer, None)
        assert tuner.available == 4
        machine.steps(tuner, 80)
        assert tuner.chosen == chosen, others
        # Three free cores have no room for four threads: that count is not timed at all.
        assert tuner.summary().get("not_timed") == ([4] if others == 5.0 else None)
        assert (4 in tuner.measured) == (machine.seconds_at.get(4, 0.0) > 0) == (others == 4.0)


def test_the_machine_s_cpu_time_is_read_where_linux_gives_it():
    reading = threads_module.cpu_seconds()
    if reading is None:
        pytest.skip("no /proc/stat on this system: the near-tie margin always applies here")
    machine, own, cores = reading
    assert cores >= 1 and machine >= own > 0
    assert threads_module.other_cpu_seconds(reading, reading) == 0.0
    assert threads_module.other_cpu_seconds(None, reading) is None
    assert threads_module.other_cpu_seconds((10.0, 4.0, 2), (12.0, 5.0, 2)) == pytest.approx(1.0)


def test_a_count_clearly_slower_is_not_timed_again(monkeypatch):
    """Loaded, a batch at two threads took 22x the time at one (a CNN's 2.3x, 3.5x while both runs time
    two threads): the trial leaves it after two such steps, or after the round when it is 1.5x slower,
    instead of spending two more rounds of slow steps on it."""
    for slow, timed in ((0.40, 2), (0.046, 2), (0.035, threads_module.STEPS)):
        machine = FakeMachine(monkeypatch, {2: slow, 1: 0.02})
        tuner = ThreadTuner("auto", processes=1)
        tuner.on_fit_start(machine.trainer, None)
        machine.steps(tuner, 40)
        assert tuner.chosen == 1 and tuner.trials == 1
        assert len(tuner._times[2]) == timed, slow  # one round at two threads (or less), not three
        assert machine.seconds_at[2] == pytest.approx(timed * slow)

    # Within the margin of clear: all rounds are timed (a burst cannot end the trial early).
    machine = FakeMachine(monkeypatch, {2: 0.012, 1: 0.010})
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.steps(tuner, 60)
    assert len(tuner._times[2]) == threads_module.STEPS * threads_module.ROUNDS
    # One thread's first round lasts LOAD_PIECE seconds (the load is read over it), give or take the
    # step that starts the thread pool (untimed).
    first_round = len(tuner._times[1]) - threads_module.STEPS * (threads_module.ROUNDS - 1)
    assert abs(first_round * 0.010 - threads_module.LOAD_PIECE) <= 0.010 + 1e-9


def test_on_more_cores_the_clearly_slower_counts_leave_and_the_close_ones_are_timed_to_the_end(monkeypatch):
    machine = FakeMachine(monkeypatch, {8: 0.40, 4: 0.09, 2: 0.011, 1: 0.012}, cores=8)  # slow at 8 and 4 threads
    machine.threads = 8
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    assert tuner.available == 8 and machine.threads == 1
    machine.steps(tuner, 100)
    assert tuner.trials == 1 and tuner.chosen == 2 and machine.threads == 2
    assert len(tuner._times[8]) == 2  # two steps, each 2x the best: left within the first round
    assert len(tuner._times[4]) == 2
    assert len(tuner._times[2]) == threads_module.STEPS * threads_module.ROUNDS
    assert len(tuner._times[1]) > threads_module.STEPS * threads_module.ROUNDS  # LOAD_PIECE s in its first round


def test_the_trial_is_counted_in_batches_not_steps(monkeypatch):
    """With steps_per_execution=K a Lightning step trains K batches: a trial of steps lasted K times as
    long, and a CNN beside another run was still in it 20 s in. It times ``STEPS`` batches a count and
    round, at least one step."""
    machine = FakeMachine(monkeypatch, {2: 0.27, 1: 0.12})  # a CNN beside another run: 2.3x at two threads
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.steps(tuner, threads_module.WARMUP, batches=2)  # the fit's first steps (K=2 while K is measured)
    before = machine.now
    machine.steps(tuner, 12, batches=6)
    assert tuner.chosen == 1 and tuner.trials == 1
    assert tuner._times[2] == [pytest.approx(0.27)]  # one step of six batches at two threads
    assert machine.seconds_at[2] == pytest.approx(6 * 0.27)
    assert tuner.summary()["batch_ms"] == {"2": pytest.approx(270.0), "1": pytest.approx(120.0)}
    assert machine.now - before == pytest.approx(12 * 6 * 0.12 + 6 * (0.27 - 0.12))  # one slow step in all


def test_the_load_is_read_over_training_when_epochs_are_short(monkeypatch):
    """An MLP's epoch lasts under two seconds: the load is summed over the training steps of several
    epochs (a validation's time left out), so the core a finished run frees is still found."""
    machine = FakeMachine(monkeypatch, {2: 0.40, 1: 0.07}, others=1.0)
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)

    def epochs(seconds: float) -> None:
        end = machine.now + seconds
        while machine.now < end:
            machine.run_for(tuner, 1.0)  # an epoch of a second, then its validation
            tuner.on_validation_start(machine.trainer, None)
            machine.now += 0.5
            tuner.on_train_epoch_start(machine.trainer, None)

    epochs(100)
    assert tuner.chosen == 1 and tuner.trials == 4
    machine.load({2: 0.04, 1: 0.07}, others=0.0)
    epochs(8 * threads_module.LOAD_EVERY)
    assert tuner.trials == 5 and tuner.chosen == 2


@pytest.mark.parametrize("readable", [True, False])
def test_the_counts_are_timed_again_later_less_often_while_the_choice_holds(monkeypatch, readable):
    """On two cores beside another run, two runs started together may have timed each other's trials,
    and where the load cannot be read no reading shows the other run end. So after a busy trial the
    counts are timed again ``RECHECK`` seconds later, then twice as long after each that keeps the
    count, and a lasting load costs little."""
    machine = FakeMachine(monkeypatch, {2: 0.40, 1: 0.07}, others=1.0, readable=readable)
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.run_for(tuner, 600)
    assert tuner.chosen == 1
    # Trials at the start and about 10, 30, 70, 150 and 310 s later: 6, not one every 10 s.
    assert tuner.trials == 6
    # The rechecks' batches at two threads: under 3% of the time; none where the load is read (each
    # recheck's one-thread steps read another process on one of the two cores: two are not timed).
    assert machine.seconds_at.get(2, 0.0) < 0.03 * 600
    if readable:
        assert machine.seconds_at.get(2, 0.0) == 0.0 and tuner.summary()["not_timed"] == [2]
    else:  # nothing says the other core is taken: two threads are timed, and left after two slow steps
        assert machine.seconds_at[2] > 0.0 and "not_timed" not in tuner.summary()
    # The other run ends: one thread's step is as long as before, two threads' now shorter; found
    # at the next recheck, or two readings of the load later where it can be read.
    machine.load({2: 0.04, 1: 0.07}, others=0.0)
    machine.run_for(tuner, threads_module.RECHECK_MAX + 10)
    assert tuner.chosen == 2 and machine.threads == 2
    if readable:
        assert machine.seconds_at[2] > threads_module.RECHECK_MAX + 10 - 3 * threads_module.LOAD_EVERY - 1


def test_the_first_steps_of_a_fit_do_not_decide_the_count(monkeypatch):
    """A fit's first steps are slow at any count (allocation, cold caches): untimed, so the count
    tried first (every thread) is not judged by them."""
    machine = FakeMachine(monkeypatch, {2: 0.5, 1: 0.5}, others=1.0)  # the cold start (loader workers starting)
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.steps(tuner, threads_module.WARMUP)
    machine.load({2: 0.010, 1: 0.014}, others=0.0)  # warm: two threads are faster
    machine.steps(tuner, 60)
    assert tuner.chosen == 2 and tuner.measured == {2: pytest.approx(0.010), 1: pytest.approx(0.014)}
    assert tuner.others == pytest.approx(0.0)  # nor is the load read over them


def test_auto_does_not_measure_again_while_the_load_holds(monkeypatch):
    machine = FakeMachine(monkeypatch, {2: 0.010, 1: 0.018})
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.steps(tuner, 500)
    assert tuner.chosen == 2 and tuner.trials == 1
    assert machine.calibrations == 1  # the first choice; no change after it


def test_a_burst_during_the_trial_does_not_decide_it(monkeypatch):
    """Rounds interleave the counts: a burst of load on a few steps of one count is outvoted by the median."""
    machine = FakeMachine(monkeypatch, {2: 0.010, 1: 0.018})
    tuner = ThreadTuner("auto", processes=1)
    tuner.on_fit_start(machine.trainer, None)
    # The fit's first step (nothing before it to time it from), its warm-up, the first step at one
    # thread (short: untimed, the pool starts) and a round at one, LOAD_PIECE seconds long at least.
    machine.steps(tuner, 1 + threads_module.WARMUP + 1)
    while tuner._rounds[0][0] == 1:
        machine.steps(tuner, 1)
    one = len(tuner._times[1])
    assert tuner._times == {1: [pytest.approx(0.018)] * one, 2: []}
    assert abs(one * 0.018 - threads_module.LOAD_PIECE) <= 0.018 + 1e-9
    machine.cost = {2: 0.5, 1: 0.018}  # a burst on the first step at two
    machine.steps(tuner, 1)
    assert tuner._times[2] == [pytest.approx(0.5)]  # timed (a long first step is), and not enough to leave two
    machine.cost = {2: 0.010, 1: 0.018}
    machine.steps(tuner, 40)
    assert tuner.chosen == 2


def test_a_fixed_count_is_honoured_and_not_measured(monkeypatch):
    machine = FakeMachine(monkeypatch, {2: 0.4, 1: 0.07, 3: 1.0})
    tuner = ThreadTuner(3, processes=1)
    tuner.on_fit_start(machine.trainer, None)
    machine.steps(tuner, 100)
    assert machine.threads == 3 and tuner.chosen == 3 and tuner.trials == 0


def test_a_deterministic_run_keeps_the_available_threads_whatever_the_load(monkeypatch):
    """trainer.deterministic=true: one thread would be faster here, but a count the load chose would round
    sums differently from the run's resumed half (or a rerun), so auto keeps the available count."""
    machine = FakeMachine(monkeypatch, {2: 0.4, 1: 0.07})
    tuner = ThreadTuner("auto", processes=1, deterministic=True)
    tuner.on_fit_start(machine.trainer, None)
    machine.steps(tuner, 100)
    assert machine.threads == 2 and tuner.chosen == 2 and tuner.trials == 0
    assert tuner.summary()["fixed_by"] == "trainer.deterministic"


def test_processes_sharing_the_machine_divide_the_threads(monkeypatch):
    machine = FakeMachine(monkeypatch, {1: 0.01})
    machine.threads = 2
    tuner = ThreadTuner("auto", processes=2)  # a joblib sweep of two jobs on two cores
    tuner.on_fit_start(machine.trainer, None)
    assert tuner.available == 1 and machine.threads == 1
    machine.steps(tuner, 50)
    assert tuner.trials == 0  # nothing to choose from


def test_joblib_n_jobs_is_read_from_the_running_job(monkeypatch):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {"hydra": {"launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}}}
    )
    monkeypatch.setattr(threads_module.os, "cpu_count", lambda: 8)
    for n_jobs, expected in ((2, 2), (-1, 8), (-2, 7), (16, 8)):
        config.hydra.launcher.n_jobs = n_jobs
        monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda c=config: c.hydra))
        assert threads_module.parallel_processes() == expected, n_jobs
    config.hydra.launcher._target_ = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert threads_module.parallel_processes() == 1


def test_steps_per_execution_auto_is_not_moved_by_a_burst():
    quiet_batch, quiet_execution = [0.002] * 12, [0.0045] * 12  # 0.5 ms of overhead a step
    plan = ExecutionPlan("auto")
    plan.choose(quiet_batch, quiet_execution)
    k = plan.k
    assert k == 5
    # The same machine with bursts of load on a third of the samples (any of them, batches or steps).
    bursty_batch = [t * (8 if i % 3 == 0 else 1) for i, t in enumerate(quiet_batch)]
    bursty_execution = [t * (8 if i % 3 == 1 else 1) for i, t in enumerate(quiet_execution)]
    plan.choose(bursty_batch, bursty_execution)
    assert plan.k == k


@pytest.mark.parametrize(
    "batch, noise", [(0.13, 0.04), (0.002, 0.001)], ids=["cnn-like: 130 ms a batch", "mlp-like: 2 ms a batch"]
)
def test_steps_per_execution_auto_lands_within_a_factor_of_two_of_its_idle_k_when_loaded(batch, noise):
    """The same command idle and beside another run: every batch gets its own random extra time (load
    only adds). The lower quartile of the executions less twice that of the batches read a CNN's K as
    1 to 8 (the low end of a sum of two batches is not twice the low end of one); each execution's
    excess over twice its own inner batch, taken as a median, is not biased by it."""
    import random

    from zoo.tasks.execution import OVERHEAD, SAMPLES

    overhead = 0.0005  # Lightning's per-step cost
    idle = ExecutionPlan("auto")
    idle.choose([batch] * SAMPLES, [2 * batch + overhead] * SAMPLES)
    assert idle.k == pytest.approx(overhead / (OVERHEAD * batch), abs=1)  # the overhead is 5% of K batches
    ks = []
    for seed in range(50):
        rng = random.Random(seed)
        inner = [batch + rng.expovariate(1 / noise) for _ in range(SAMPLES)]
        executions = [b + batch + rng.expovariate(1 / noise) + overhead for b in inner]
        plan = ExecutionPlan("auto")
        plan.choose(inner, executions)
        ks.append(plan.k)
    within = sum(idle.k / 2 <= k <= 2 * idle.k for k in ks)
    assert within >= 40, sorted(ks)  # 4 in 5 calibrations (a third of a batch's time as load, on average)


def test_threads_and_k_are_recorded_in_metrics_json_and_a_fixed_count_is_used(tmp_path):
    import lightning as L

    import train
    from zoo.run.config import compose_run

    seen = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    out = tmp_path / "run"
    cfg = compose_run(["trainer.max_epochs=1", "threads=2", "callbacks=none", "logger=none"], str(out), None)
    train.train(cfg, extra_callbacks=(Probe(),))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threads"]["requested"] == 2 and metrics["threads"]["chosen"] == 2
    assert isinstance(metrics["steps_per_execution"], int) and metrics["steps_per_execution"] >= 1
    assert seen and set(seen) == {2}
    assert torch.get_num_threads() == before  # the process gets its count back


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
def test_a_thread_count_that_cannot_work_is_refused_naming_the_key(value, tmp_path):
    from tests.helpers import command

    r = command("train.py", f"threads={value}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2
    assert "threads" in r.stderr and "Traceback" not in r.stderr


def test_the_console_s_results_say_why_the_count_was_chosen(capsys, monkeypatch):
    from zoo.run.report import report

    monkeypatch.setenv("COLUMNS", "200")  # one line a row

    threads = {"requested": "auto", "available": 2, "chosen": 1, "trials": 2, "batch_ms": {"2": 191.3, "1": 114.0}}
    report({"epochs": 1, "threads": {**threads, "other_cores": 0.83}})
    out = " ".join(capsys.readouterr().out.split())
    assert "1 (per batch 2: 191.3 ms, 1: 114 ms; other processes busy on 0.83 cores)" in out
    report({"epochs": 1, "threads": threads})  # where the load cannot be read
    assert "1 (per batch 2: 191.3 ms, 1: 114 ms)" in " ".join(capsys.readouterr().out.split())
    crowded = {**threads, "batch_ms": {"1": 114.0}, "not_timed": [2], "other_cores": 1.02}
    report({"epochs": 1, "threads": crowded})  # another run held a core: two threads were not tried
    out = " ".join(capsys.readouterr().out.split())
    assert "1 (per batch 1: 114 ms; 2 not timed; other processes busy on 1.02 cores)" in out
