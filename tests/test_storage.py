"""What a study's storage survives (archsearch.search.storage, .journal, .retry, .records): a
journal torn at any byte of its last record, an append that fails halfway, a storage that is
down for a moment or for good in the middle of a trial. Nothing here needs a second process."""

import errno
import json
import resource
import shutil
import signal
import warnings

import optuna
import pytest
from optuna.storages import JournalStorage

import archsearch.search.retry as retry_module
from archsearch.results import open_study
from archsearch.schema.space import space_from_dict
from archsearch.search.storage import StorageWarning, open_storage
from archsearch import run_study
from test_study import DISTINCT, storage_trials, tiny

JOURNAL = "optuna.journal"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(retry_module, "RETRY_DELAYS", (0.01, 0.01, 0.01))


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A study folder of two completed trials; its journal's last line is the second one's tell."""
    results = tmp_path_factory.mktemp("finished")
    run_study(space_from_dict(tiny(**DISTINCT)), results)
    return results / "tiny"


def last_line_span(data: bytes) -> tuple[int, int]:
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    return start, len(data)


def snapshot(trials):
    return [(t.number, t.state.name, t.values, t.params, t.user_attrs) for t in trials]


def test_a_journal_torn_at_any_byte_of_its_last_line_is_set_aside(finished_study, tmp_path):
    data = (finished_study / JOURNAL).read_bytes()
    start, end = last_line_span(data)
    assert data.endswith(b"\n") and json.loads(data[start:])["op_code"] == 6  # set_trial_state_values
    original = storage_trials(finished_study)
    intact = snapshot(original[:1])  # the first trial does not depend on the last line
    earlier = [(t.params, t.user_attrs) for t in original]  # nor does anything but the second one's state
    for cut in range(start + 1, end):
        folder = tmp_path / str(cut)
        folder.mkdir()
        (folder / JOURNAL).write_bytes(data[:cut])
        named = "set_trial_state_values of trial 1" if cut == end - 1 else "the torn last record"
        with pytest.warns(StorageWarning, match=named):
            study = open_study(folder)  # what `results` and `report` open
        trials = study.get_trials(deepcopy=False)
        assert snapshot(trials[:1]) == intact and [(t.params, t.user_attrs) for t in trials] == earlier
        assert trials[1].state.name == "RUNNING"
        assert (folder / JOURNAL).read_bytes() == data[:start]
        assert (folder / f"{JOURNAL}.torn").read_bytes() == data[start:cut] + b"\n"
        study.set_user_attr("resumed", cut)  # the next append no longer lands on the torn line
        assert open_study(folder).user_attrs["resumed"] == cut


def test_a_complete_last_line_that_is_not_json_is_torn_too(finished_study, tmp_path):
    data = (finished_study / JOURNAL).read_bytes()
    start, _ = last_line_span(data)
    folder = tmp_path / "garbled"
    folder.mkdir()
    (folder / JOURNAL).write_bytes(data[:start] + b'{"op_code": 8, "wor\n')
    (folder / f"{JOURNAL}.torn").write_bytes(b"an earlier torn record\n")
    with pytest.warns(StorageWarning, match="set_trial_user_attr"):
        open_study(folder).set_user_attr("resumed", True)
    assert open_study(folder).user_attrs["resumed"] is True
    assert (folder / f"{JOURNAL}.torn").read_bytes() == b'an earlier torn record\n{"op_code": 8, "wor\n'  # appended


def test_a_record_torn_by_another_process_is_set_aside_before_the_next_append(tmp_path):
    study = optuna.create_study(study_name="s", storage=open_storage(None, tmp_path))
    with open(tmp_path / JOURNAL, "ab") as f:  # a worker SIGKILLed inside its write
        f.write(b'{"op_code":8,"worker_id":"w","trial_id":0,"user_attr":{"heart')
    with pytest.warns(StorageWarning, match="set_trial_user_attr of trial 0.*a writer died mid-record"):
        study.set_user_attr("after", 1)  # this process opened the journal before it was torn
    assert open_study(tmp_path, study="s").user_attrs == {"after": 1}


def test_a_torn_journal_resumes_with_every_trial(finished_study, tmp_path, monkeypatch):
    """The torn record was the second trial's tell: the next run records it from its metrics.json,
    without training it again, and the study reaches its count."""
    import archsearch.trial as trial_module

    folder = tmp_path / "tiny"
    shutil.copytree(finished_study, folder)
    data = (folder / JOURNAL).read_bytes()
    start, end = last_line_span(data)
    (folder / JOURNAL).write_bytes(data[:(start + end) // 2])
    monkeypatch.setattr(trial_module, "run_trial", lambda *a, **k: pytest.fail("trained a trial again"))
    with pytest.warns(StorageWarning):
        summary = run_study(space_from_dict(tiny(**DISTINCT)), tmp_path)
    assert summary.trials == summary.completed == 2
    assert snapshot(storage_trials(folder))[0] == snapshot(storage_trials(finished_study))[0]
    recovered, original = storage_trials(folder)[1], storage_trials(finished_study)[1]
    assert recovered.state.name == "COMPLETE" and recovered.values == original.values
    assert recovered.user_attrs["phase"] == "done" and recovered.user_attrs["val_loss"] == original.user_attrs["val_loss"]


def test_an_append_that_fails_halfway_leaves_no_torn_record(tmp_path, monkeypatch):
    monkeypatch.setattr(retry_module, "RETRY_DELAYS", ())  # one attempt: one torn piece
    study = optuna.create_study(study_name="s", storage=open_storage(None, tmp_path))
    journal = tmp_path / JOURNAL
    size = journal.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))  # the record is ~1 kB: 40 bytes get written
    try:
        with pytest.warns(StorageWarning, match="appending failed"), pytest.raises(OSError) as info:
            study.set_user_attr("big", "x" * 1000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert info.value.errno == errno.EFBIG
    assert journal.stat().st_size == size and journal.read_bytes().endswith(b"\n")
    assert len((tmp_path / f"{JOURNAL}.torn").read_bytes()) == 41  # what was written, and a newline
    study.set_user_attr("big", "y")
    assert open_study(tmp_path, study="s").user_attrs == {"big": "y"}


class Outage:
    """Makes the journal's writes fail with ENOSPC: `down` for good, or `brief` for a few calls;
    `down_from_phase` sets `down` when a trial's phase changes to it (and fails that write)."""

    def __init__(self, monkeypatch, down_from_phase: str | None = None):
        self.down, self.brief, self.down_from_phase = False, 0, down_from_phase
        for name in ("set_trial_user_attr", "set_trial_system_attr", "set_trial_state_values", "create_new_trial"):
            real = getattr(JournalStorage, name)
            monkeypatch.setattr(JournalStorage, name, self._failing(real))

    def _failing(self, real):
        def write(storage, *args, **kwargs):
            if args[1:] == ("phase", self.down_from_phase):
                self.down = True
            if self.brief > 0 or self.down:
                self.brief -= 1
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(storage, *args, **kwargs)

        return write


def test_a_moment_without_storage_loses_nothing(tmp_path, monkeypatch):
    outage = Outage(monkeypatch)
    real_tell = optuna.Study.tell

    def tell(study, *args, **kwargs):
        outage.brief = len(retry_module.RETRY_DELAYS)  # every attempt but the last fails
        return real_tell(study, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "tell", tell)
    summary = run_study(space_from_dict(tiny(**DISTINCT)), tmp_path)
    assert summary.trials == summary.completed == 2


def test_a_trial_trained_while_the_storage_went_down_is_recorded_when_the_study_resumes(tmp_path, monkeypatch):
    import archsearch.trial as trial_module

    outage = Outage(monkeypatch, down_from_phase="evaluating")  # mid-trial, for good
    trained = []
    real_run_trial = trial_module.run_trial

    def run_trial(*args, **kwargs):
        result = real_run_trial(*args, **kwargs)
        trained.append(result)
        return result

    monkeypatch.setattr(trial_module, "run_trial", run_trial)
    space = space_from_dict(tiny(**DISTINCT))
    with pytest.raises(OSError, match="No space left"):
        run_study(space, tmp_path)
    folder = tmp_path / "tiny"
    (lost,) = storage_trials(folder)
    result = json.loads((folder / "trials" / "0" / "metrics.json").read_text())
    assert lost.state.name == "RUNNING" and result["state"] == "COMPLETE"
    assert result["val_loss"] == trained[0].metrics.val_loss and len(result["values"]) == 2

    outage.down, outage.down_from_phase = False, None
    summary = run_study(space, tmp_path)
    assert summary.trials == summary.completed == 2 and len(trained) == 2  # trial 0 was not trained again
    recorded = storage_trials(folder)[0]
    assert recorded.state.name == "COMPLETE" and recorded.values == result["values"]
    assert recorded.user_attrs["val_loss"] == result["val_loss"] and recorded.user_attrs["phase"] == "done"


def test_an_rdb_storage_asks_and_tells_without_optunas_heartbeat_warning(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.tell(study.ask(), 1.0)
    assert [str(w.message) for w in caught if "eartbeat" in str(w.message)] == []
