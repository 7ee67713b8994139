"""`archsearch train`: retrain one chosen network for real, resumably.

    from archsearch.retrain import run_job, train_job
    job = train_job("results/quickstart", trial="knee", steps=600)   # or a space file, or a U-Net config
    run = run_job(job, "auto", out_dir=job.out_dir)                  # Ctrl-C, then resume=True

`source` finds what to train (a space file without distributions, a U-Net config under a space
or the study it sits in, a study's trial) as a fixed space; `run` trains it as one trial
(archsearch.trial.run_trial) with evaluations at intervals, a resumable state saved
periodically and on SIGINT/SIGTERM (archsearch.train_state), and the final checkpoint and
metrics. Sits beside export and verify (it picks trials the way export does); nothing imports it
but the CLI.
"""

from .run import STATE_NAME, JobRun, RunInterrupted, default_every, run_job
from .source import TRIAL_FILES, TrainJob, train_job

__all__ = ["STATE_NAME", "JobRun", "RunInterrupted", "default_every", "run_job", "TRIAL_FILES", "TrainJob", "train_job"]
