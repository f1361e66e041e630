"""Stages used by the engine tests, loaded through the pipeline's `plugins:` key."""

from __future__ import annotations

import os
import time
from pathlib import Path

from reasonmill.stages.base import Stage, StageOutput, StageSettings, stage


class SlowSettings(StageSettings):
    sleep: float = 0.0
    #: a file where every processed shard appends one line (to detect re-processing)
    log: str
    #: drop records whose id ends with this hex digit (exercise the ledger)
    drop_suffix: str | None = None


@stage("test.slow")
class Slow(Stage):
    Settings = SlowSettings

    def process(self, records, index=None):
        time.sleep(self.settings.sleep)
        out = StageOutput()
        for r in records:
            if self.settings.drop_suffix and r["id"].endswith(self.settings.drop_suffix):
                out.drop(r, "test_drop", "dropped by the test stage", suffix=self.settings.drop_suffix)
            else:
                out.kept.append(r)
        with open(self.settings.log, "a") as fh:
            fh.write(f"{os.getpid()} {len(records)} {records[0]['id'] if records else '-'}\n")
        return out
