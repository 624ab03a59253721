"""Notices of the libraries we build on that a user of ours cannot act on, silenced narrowly (by
message and category, or logger and message) in this one place. The entry scripts call
`quiet_known_notices()` first thing; each entry says why its cause is not fixed here.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category)
WARNINGS = [
    # Lightning's batch flattening (pytorch_lightning/utilities/_pytree.py) builds torch's
    # LeafSpec, which torch deprecates; Lightning's code to change, not ours
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # Optuna marks RDBStorage's heartbeat experimental; sweeps rely on it to fail the trials of a
    # worker that died (forecast.sweep.open_storage)
    (r"Argument ``heartbeat_interval`` is an experimental feature", Warning),
    # model=lstmp with impl=torch: torch's fused LSTM falls back from oneDNN for projections, with
    # the same results (conf/model/lstmp.yaml chooses the implementation)
    (r"LSTM with projections is not supported with oneDNN", UserWarning),
    # Lightning, on machines with more than 2 cores, asks for DataLoader workers: our windows are
    # gathered from memory in one indexing per batch (forecast/data/windows.py), which workers
    # would only copy between processes (data.num_workers stays for datasets of your own)
    (r"does not have many workers which may be a bottleneck", UserWarning),
]
# (logger, text in the message): Lightning's advertisement for its cloud logger, at every fit,
# and its running commentary, which buried the end-of-run summary: that 1.0 of the training
# batches is all of them (conf/trainer/default.yaml states Lightning's default), that fit ended
# at max_epochs, and the test's reload of the best checkpoint (the summary names the run folder)
RANK_ZERO = "pytorch_lightning.utilities.rank_zero"
LOG_RECORDS = [
    (RANK_ZERO, "litlogger"),
    (RANK_ZERO, "TPU available"),
    (RANK_ZERO, "was configured so 100% of the batches"),
    (RANK_ZERO, "`Trainer.fit` stopped: `max_epochs="),
    (RANK_ZERO, "Restoring states from the checkpoint path"),
    (RANK_ZERO, "Loaded model weights from the checkpoint"),
]


class DropRecords(logging.Filter):
    """Drops a logger's records whose message contains `text`."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_known_notices() -> None:
    for message, category in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, text in LOG_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropRecords) and f.text == text for f in logger.filters):
            logger.addFilter(DropRecords(text))
