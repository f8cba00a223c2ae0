"""`python -m deeppose train`: the whole DeepPose pipeline in one process, run from the repository
root (./deeppose_train.sh is this command).

Steps: data stage1 lmdb1 train1 accuracy1 output1 stage2 lmdb2 train2 accuracy2. A step whose
outputs exist is skipped (outputs are written atomically; an accuracy report counts only when
complete); --from STEP redoes STEP and every later step. A training step stopped with Ctrl-C
(SIGINT) or SIGTERM snapshots and ends the run; the next run resumes from that snapshot.

A run's paths are read from the stage nets and solvers, never written twice: each stage's
databases and mean file from its training prototxt's Data layers, its snapshots from its solver's
snapshot_prefix; the stage lists from the dataset description's root. The nets are the committed
ones where they fit the dataset, else run-local copies with the joint-dependent fields set
(deeppose.nets). Every random draw comes from the run's one seed (--seed, default globalvar.py's
SEED): the synthetic set, the stage lists, the refiner's crops and the solvers' random_seed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import datasets, evaluate, nets, solvers, stage_data, steps
from .cli import command
from .dataset import annotation_paths
from .options import Extend, device_ids, env_default, non_negative_int, one_of, positive_float, positive_int, solver_fields

STEPS = ("data", "stage1", "lmdb1", "train1", "accuracy1", "output1", "stage2", "lmdb2", "train2", "accuracy2")
STAMP = Path("models/dataset.txt")  # the dataset whose outputs models/ holds
SCHEDULES = ("auto", "full", "cpu")
# The short CPU schedule's solver fields, per stage (the committed solvers keep the seed's; see
# docs/cpu_schedule.md for the measurements behind each value).
CPU_SOLVER = {
    1: {"type": "Adam", "base_lr": 1e-4, "lr_policy": "fixed", "weight_decay": 5e-4, "momentum": 0.9,
        "momentum2": 0.999},
    2: {"type": "Adam", "base_lr": 1e-4, "lr_policy": "fixed", "weight_decay": 5e-4, "momentum": 0.9,
        "momentum2": 0.999},
}
CPU_SOLVERS = ("tuned", "seed")


def log(message: str) -> None:
    import caffe
    caffe.glog.info("train.py", message)  # the tag its lines had as deeppose/train.py


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deeppose train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The DEEPPOSE_* environment variables give the defaults of the options they name.")
    p.add_argument("--from", dest="start", type=one_of(*STEPS), metavar="STEP",
                   help=f"redo STEP and every later step ({' '.join(STEPS)})")
    datasets.add_argument(p)
    datasets.add_seed_argument(p)
    s = p.add_argument_group("schedule")
    s.add_argument("--schedule", type=one_of(*SCHEDULES), default=env_default("DEEPPOSE_SCHEDULE", "auto"),
                   metavar="{" + ",".join(SCHEDULES) + "}",
                   help="full: the committed solvers' schedule (120000 iterations; solver_mode CPU without a "
                        "GPU); cpu: the short CPU schedule below; auto (default): full with a GPU, else cpu "
                        "[DEEPPOSE_SCHEDULE]")
    for k, it, batch in ((1, 600, 32), (2, 300, 32)):
        s.add_argument(f"--iter{k}", type=positive_int, default=env_default(f"DEEPPOSE_ITER{k}", str(it)),
                       help=f"cpu: stage {k}'s max_iter, snapshot at the end (default %(default)s) [DEEPPOSE_ITER{k}]")
        s.add_argument(f"--batch{k}", type=positive_int, default=env_default(f"DEEPPOSE_BATCH{k}", str(batch)),
                       help=f"cpu: stage {k}'s TRAIN batch size (default %(default)s) [DEEPPOSE_BATCH{k}]")
        s.add_argument(f"--lr{k}", type=positive_float, default=env_default(f"DEEPPOSE_LR{k}"),
                       help=f"cpu: stage {k}'s base_lr (default: CPU_SOLVER's with --cpu-solver tuned, else the "
                            f"committed solver's) [DEEPPOSE_LR{k}]")
        s.add_argument(f"--solver{k}", type=solver_fields, action=Extend, metavar="FIELD=VALUE",
                       default=env_default(f"DEEPPOSE_SOLVER{k}"),
                       help=f"set a field of stage {k}'s run-local solver (after CPU_SOLVER and --lr{k}); "
                            f"repeatable, e.g. --solver{k} lr_policy=poly --solver{k} power=1 (the variable: "
                            f"items separated by spaces) [DEEPPOSE_SOLVER{k}]")
    s.add_argument("--cpu-solver", type=one_of(*CPU_SOLVERS), default=env_default("DEEPPOSE_CPU_SOLVER", "tuned"),
                   metavar="{" + ",".join(CPU_SOLVERS) + "}",
                   help="cpu: the solver's rules: tuned (default: CPU_SOLVER in deeppose/driver.py, see "
                        "docs/cpu_schedule.md) or seed (the committed solver's type, rates and decay) [DEEPPOSE_CPU_SOLVER]")
    s.add_argument("--targets", type=one_of(*stage_data.TARGET_UNITS), default=env_default("DEEPPOSE_TARGETS", "pixels"),
                   metavar="{" + ",".join(stage_data.TARGET_UNITS) + "}",
                   help="the stages' target units: pixels (default, the seed's offsets in pixels) or box (the paper's "
                        "normalisation: offsets / the image's size at stage 1, / the crop side at a refiner; measured "
                        "worse on the CPU schedule, docs/cpu_schedule.md) [DEEPPOSE_TARGETS]")
    s.add_argument("--test-iter", type=positive_int, default=env_default("DEEPPOSE_TEST_ITER", "20"),
                   help="cpu: test_iter of the test at the end of training (default %(default)s) [DEEPPOSE_TEST_ITER]")
    s.add_argument("--gpus", type=device_ids, default=env_default("DEEPPOSE_GPUS", "all"),
                   help="full schedule on GPUs: the devices to train on, e.g. 0,1 (default: all; several "
                        "run one worker each, as caffe train -gpu) [DEEPPOSE_GPUS]")
    d = p.add_argument_group("data")
    d.add_argument("--synth-train", type=positive_int, default=env_default("DEEPPOSE_SYNTH_TRAIN", "2000"),
                   help="synthetic set (made when the dataset has no annotations): training images "
                        "(default %(default)s) [DEEPPOSE_SYNTH_TRAIN]")
    d.add_argument("--synth-test", type=positive_int, default=env_default("DEEPPOSE_SYNTH_TEST", "150"),
                   help="synthetic set: test images (default %(default)s) [DEEPPOSE_SYNTH_TEST]")
    d.add_argument("--synth-seed", type=non_negative_int, default=env_default("DEEPPOSE_SYNTH_SEED"),
                   help="synthetic set: its seed (default: the run's seed) [DEEPPOSE_SYNTH_SEED]")
    d.add_argument("--displacements", type=one_of(*steps.DISPLACEMENTS),
                   default=env_default("DEEPPOSE_DISPLACEMENTS", "simulated"),
                   metavar="{" + ",".join(steps.DISPLACEMENTS) + "}",
                   help="stage 2: the refiner's training crops around simulated stage-1 estimates (the "
                        "paper's, default) or stage 1's predictions on the training images [DEEPPOSE_DISPLACEMENTS]")
    d.add_argument("--per-image", type=positive_int, default=env_default("DEEPPOSE_PER_IMAGE", "1"),
                   help="stage 2: joints cropped per training image (default %(default)s) [DEEPPOSE_PER_IMAGE]")
    return p


@dataclass(frozen=True)
class Stage:
    """One trained stage: its nets, the run-local solver it trains with and the paths they name."""

    number: int
    files: nets.ModelFiles
    solver: Path  # the run-local solver
    data: nets.DataFiles
    final: Path  # the weights file training ends with
    log: Path
    report: Path
    plot: Path
    sheet: Path  # the results sheet


class Tee:
    """A stream writing to several (stderr and a log file)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()


class Run:
    """The pipeline of one dataset, seed and schedule (the parsed options `args`); `run()` runs its
    steps in order, skipping those done."""

    def __init__(self, args):
        import torch

        self.args = args
        self.desc = datasets.selected(args.dataset)
        self.seed = datasets.selected_seed(args.seed)
        self.gpu_count = torch.cuda.device_count()  # the one GPU probe
        self.schedule = args.schedule if args.schedule != "auto" else ("full" if self.gpu_count else "cpu")
        self.gpus = self._gpus() if self.schedule == "full" and self.gpu_count else []
        self.units = args.targets
        stage1, refine = nets.stage_nets(self.desc)
        self.stages = [self._stage(1, stage1, args.iter1, args.batch1, args.lr1, args.solver1 or []),
                       self._stage(2, refine, args.iter2, args.batch2, args.lr2, args.solver2 or [])]
        self.forced = False
        log(f"dataset {self.desc.name} ({self.desc.root}), seed {self.seed}, schedule {self.schedule}, "
            f"targets in {self.units}")
        for s in self.stages:
            log(f"stage {s.number}: nets {s.files.deploy}, {s.files.train}; solver {s.solver}; "
                f"databases {s.data.train_db}, {s.data.test_db}; mean {s.data.mean}; weights {s.final}")
        if self.schedule == "cpu":
            log(f"no GPU: running on CPU with the short schedule: {self.stages[0].solver} and "
                f"{self.stages[1].solver} (derived from the committed solvers)")
        elif not self.gpus:
            log(f"no GPU: the full schedule runs on CPU (solver_mode CPU in {self.stages[0].solver}, "
                f"{self.stages[1].solver}); this takes days")
        else:
            log(f"training on GPU(s) {','.join(map(str, self.gpus))}")

    def _gpus(self) -> list[int]:
        if self.args.gpus == "all":
            return list(range(self.gpu_count))
        gpus = [int(g) for g in self.args.gpus.split(",")]  # device_ids checked them
        bad = [g for g in gpus if g >= self.gpu_count]
        if bad:
            raise ValueError(f"--gpus {self.args.gpus}: this machine has {self.gpu_count} GPU(s), no {bad}")
        return gpus

    def _stage(self, number, files: nets.ModelFiles, iters, batch, lr, fields) -> Stage:
        """The stage's run-local solver (models/<net>/run/), derived from the committed one with the
        schedule's fields and the run's random_seed."""
        overrides = {"random_seed": self.seed}
        train_batch = None
        if self.schedule == "cpu":
            overrides.update(CPU_SOLVER[number] if self.args.cpu_solver == "tuned" else {}, solver_mode="CPU", max_iter=iters, snapshot=iters, display=10,
                             test_interval=iters, test_iter=[self.args.test_iter])
            if lr is not None:
                overrides["base_lr"] = lr
            train_batch = batch
        elif not self.gpus:
            overrides["solver_mode"] = "CPU"
        overrides.update(fields)
        committed = Path(files.solver)
        solver = solvers.derive_solver(committed, committed.parent / nets.RUN_DIR / committed.name, overrides,
                                       net=files.train, train_batch=train_batch)
        name = committed.stem.removesuffix("_solver")
        return Stage(number, files, solver, nets.data_files(files.train), solvers.final_snapshot(solver),
                     committed.parent / f"{name}.log", committed.parent / "accuracy.json",
                     committed.parent / "pdj_curve.png", committed.parent / "results_sheet.png")

    # -- skipping --------------------------------------------------------------------------------
    def _done(self, path: Path) -> bool:
        """An output is there (an accuracy report: complete)."""
        if not path.exists():
            return False
        if path.name == "accuracy.json":
            try:
                evaluate.read_report(path)
            except ValueError:
                log(f"{path} is not a complete report (an interrupted or failed run): its step runs again")
                return False
        return True

    def should_run(self, step: str, *outputs) -> bool:
        """Whether `step` runs: it is --from's step or later, or an output is not done."""
        if step == self.args.start:
            self.forced = True
        if self.forced or not all(self._done(Path(o)) for o in outputs):
            log(f"step {step}")
            return True
        log(f"step {step}: done already ({' '.join(map(str, outputs))}), skipped")
        return False

    # -- the steps -------------------------------------------------------------------------------
    def run(self) -> None:
        start = time.time()
        self._check_stamp()
        desc, (s1, s2) = self.desc, self.stages
        annotations = sorted({str(p) for p in annotation_paths(desc.root, desc).values()})
        if self.should_run("data", *annotations):
            self.data(annotations)
        lists1 = [stage_data.list_path(1, split, desc) for split in stage_data.STAGE1_SPLITS]
        if all(p.exists() for p in lists1) and stage_data.target_units(desc) != self.units and not self.forced:
            log(f"the stage lists hold targets in {stage_data.target_units(desc)}, this run's are in {self.units}: "
                "the steps from stage1 on run again")
            self.forced = True
        if self.should_run("stage1", *lists1):
            steps.make_stage1_lists(desc, self.seed, units=self.units)
        if self.should_run("lmdb1", *self._data_outputs(s1)):
            steps.make_databases(desc, 1, s1.files.deploy, s1.data, "test")
            STAMP.parent.mkdir(parents=True, exist_ok=True)
            STAMP.write_text(desc.name + "\n")
        if self.should_run("train1", s1.final):
            self.train(s1)
        if self.should_run("accuracy1", s1.report):
            evaluate.accuracy(desc, [s1.final], s1.plot, out=s1.report, sheet=s1.sheet)
        splits = ["val"] + (["train"] if self.args.displacements == "predictions" else [])
        if self.should_run("output1", stage_data.output_path(1, "val", desc)):
            steps.write_predictions(desc, [s1.final], splits, files=(s1.files, s2.files))
        if self.should_run("stage2", *(stage_data.list_path(2, split, desc) for split in stage_data.REFINE_SPLITS)):
            shutil.rmtree(stage_data.stage_dir(2, desc), ignore_errors=True)
            crop_px, _ = nets.input_size(s2.files.deploy)
            steps.make_refine_data(desc, 2, crop_px, self.seed, self.args.displacements, self.args.per_image)
        if self.should_run("lmdb2", *self._data_outputs(s2)):
            steps.make_databases(desc, 2, s2.files.deploy, s2.data, "val")
        if self.should_run("train2", s2.final):
            self.train(s2)
        if self.should_run("accuracy2", s2.report):
            evaluate.accuracy(desc, [s1.final, s2.final], s2.plot, out=s2.report, sheet=s2.sheet)
        log(f"finished in {time.time() - start:.0f} s; models: {s1.final} {s2.final}; PDJ curves: {s2.plot}; "
            f"results sheet: {s2.sheet}")

    def _check_stamp(self) -> None:
        """models/ holds the outputs of one dataset: another one must remake them (--from stage1)."""
        if STAMP.exists() and STAMP.read_text().strip() != self.desc.name and \
                self.args.start not in ("data", "stage1", "lmdb1"):
            raise ValueError(f"models/ holds the outputs of a run on {STAMP.read_text().strip()}, not "
                             f"{self.desc.name}: run with --from stage1 to remake them (or move them away first)")

    def data(self, annotations) -> None:
        """The data step: a dataset in place is kept; else the synthetic set is made (for a
        description of text annotations, `deeppose.synth`)."""
        desc = self.desc
        if all(Path(a).exists() for a in annotations):
            log(f"step data: {desc.root} holds a dataset; kept")
            return
        if desc.reader is not None:
            raise OSError(f"step data: {desc.root} holds no dataset (no {' '.join(annotations)}); put it in "
                          "place (see README.md)")
        log(f"step data: {desc.root} holds no dataset (no {' '.join(annotations)}): generating the synthetic set")
        from .synth import make_dataset

        seed = self.seed if self.args.synth_seed is None else self.args.synth_seed
        make_dataset(desc, desc.root, self.args.synth_train, self.args.synth_test, seed, desc.size,
                     workers=os.cpu_count() or 1)

    @staticmethod
    def _data_outputs(stage: Stage):
        return stage.data.train_db, stage.data.test_db, stage.data.mean

    def train(self, stage: Stage) -> None:
        """Train the stage, its log tee'd into `stage.log`: an interrupted run (a .solverstate
        below max_iter) resumes unless the step is redone."""
        stage.final.parent.mkdir(parents=True, exist_ok=True)
        state = None if self.forced else solvers.latest_state(stage.solver)
        with open(stage.log, "a" if state else "w", encoding="utf-8") as logfile, \
                contextlib.redirect_stderr(Tee(sys.stderr, logfile)):
            if state:
                log(f"resuming from {state}")
            steps.train(stage.solver, state, self.gpus, stage.log)


@command
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        Run(args).run()
    except steps.Stopped as e:
        log(str(e))
        return e.status
    except KeyboardInterrupt:  # outside training (whose Ctrl-C stops with a snapshot), or a second Ctrl-C
        log("interrupted; every output is written atomically: the next run redoes the unfinished step")
        return 130
    return 0
