"""A run's window of minutes, and how a window is handed to the alert DAG.

Light on purpose: the DAG files and the trigger operator import it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import env


@dataclass(frozen=True)
class Window:
    """The minutes [start, end) one run is responsible for."""

    start: datetime
    end: datetime

    @property
    def minutes(self) -> list[int]:
        return list(range(int(self.start.timestamp()), int(self.end.timestamp()), 60))

    def late_range(self, horizon: timedelta) -> tuple[datetime, datetime]:
        """Earlier minutes this run fetches again if they are still incomplete."""
        return self.start - horizon, self.start

    def lost_range(self, horizon: timedelta) -> tuple[datetime, datetime]:
        """Minutes that pass the horizon with this run: still incomplete means lost.

        Windows tile time, so each minute is in exactly one run's lost range.
        """
        return self.start - horizon - (self.end - self.start), self.start - horizon


def window_for(
    interval_start: datetime, interval_end: datetime, lag: timedelta = env.AVAILABILITY_LAG
) -> Window:
    """The run's window: its data interval shifted back by the availability lag.

    Airflow passes pendulum DateTimes, whose astimezone(UTC) drops the time zone: the
    bounds go through their timestamps to be plain UTC datetimes.
    """
    start, end = (
        datetime.fromtimestamp(t.timestamp(), UTC) - lag for t in (interval_start, interval_end)
    )
    if end <= start or start.timestamp() % 60 or end.timestamp() % 60:
        raise ValueError(f"a data interval of whole minutes is needed, not {start}..{end}")
    return Window(start, end)


def window_conf(window: Window, live: bool) -> dict[str, Any]:
    """What the transform hands the alert DAG."""
    return {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "live": live,
    }


def window_of(conf: dict[str, Any]) -> Window:
    return Window(
        datetime.fromisoformat(conf["window_start"]), datetime.fromisoformat(conf["window_end"])
    )


def is_live(run_started: datetime | None, interval_end: datetime, run_type: str) -> bool:
    """A run that started soon after its interval ended, not a catchup or backfill run.

    `run_type` may be a DagRunType, a (str, Enum) whose str() is 'DagRunType.BACKFILL'
    on Python 3.11: compare its value.
    """
    if getattr(run_type, "value", run_type) == "backfill" or run_started is None:
        return False
    return run_started - interval_end <= env.ALERT_LIVE_WITHIN
