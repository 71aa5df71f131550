"""When each NIS2 report is due (law 5160/2024, article 23 of Directive (EU) 2022/2555).

  early warning   24 hours after the entity became aware of the incident
  notification    72 hours after it became aware
  final report    one month after the notification was submitted; if the incident is still
                  being handled then, a progress report is due at that time instead and the
                  final report one month after the incident is handled

Hours are elapsed time (24 h is 24 h even across a change of the clocks); a month is a
calendar month in Greece (Europe/Athens): the same day of the next month at the same local
time (stricter than Regulation 1182/71, which waits for that day's end), or when the month has
no such day the end of its last day, as the Regulation says (31 January -> 24:00 on 28 or 29
February: Kastro's dates never move backwards as the start moves forwards). A due
time that falls in the hour the clocks skip in spring is the moment they jump; one that falls
in the hour they repeat in autumn is its first occurrence: never later than a person reading
the local time would expect. (So a start in the repeated hour's second round, whose local time
reads earlier than the first round's, gets a deadline up to an hour earlier than a start a
little before it: the stricter reading.)

Every instant is kept in UTC; Athens time is for people.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

ATHENS = ZoneInfo("Europe/Athens")
UTC = dt.UTC
EARLY_WARNING = dt.timedelta(hours=24)
NOTIFICATION = dt.timedelta(hours=72)
# The stages, in the order a person files them (article 23(4)).
STAGES = ("early_warning", "notification", "progress", "final")
STAGE_NAMES = {
    "early_warning": ("Έγκαιρη προειδοποίηση", "Early warning"),
    "notification": ("Κοινοποίηση συμβάντος", "Incident notification"),
    "progress": (
        "Τελική έκθεση, ή έκθεση προόδου αν το συμβάν συνεχίζεται",
        "Final report, or a progress report if the incident is ongoing",
    ),
    "final": ("Τελική έκθεση", "Final report"),
}


class DeadlineError(ValueError):
    """A time that cannot be used; the message says how to write it."""


def parse_time(text: str) -> dt.datetime:
    """An instant from an admin: ISO 8601 with an offset (2026-03-29T03:30+03:00, ...Z), or a
    local Athens time without one (2026-03-29 05:10), refused when that local time does not
    exist or happens twice (a change of the clocks), since either reading could miss a
    deadline."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise DeadlineError(
            f"'{text}' δεν είναι χρόνος / is not a time: γράψτε / write e.g. 2026-03-29T10:15 "
            "(ώρα Ελλάδας / Athens time) ή / or 2026-03-29T07:15Z"
        ) from error
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    first, second = value.replace(tzinfo=ATHENS, fold=0), value.replace(tzinfo=ATHENS, fold=1)
    if first.utcoffset() != second.utcoffset() or not _exists(first):
        raise DeadlineError(
            f"'{text}': η τοπική ώρα αλλάζει εκείνη τη στιγμή / the clocks change then: "
            "γράψτε τη ζώνη / write the offset, e.g. +03:00 or +02:00"
        )
    return first.astimezone(UTC)


def _exists(local: dt.datetime) -> bool:
    """False for a wall time in the hour the clocks skip."""
    back = local.astimezone(UTC).astimezone(ATHENS)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def add_month(instant: dt.datetime) -> dt.datetime:
    """One calendar month later in Athens (see the module's text), as a UTC instant."""
    local = instant.astimezone(ATHENS)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    last = calendar.monthrange(year, month)[1]
    if local.day > last:  # no such day: the end of the month's last day (Reg. 1182/71 art. 3)
        return wall_to_utc(dt.datetime(year, month, last) + dt.timedelta(days=1))
    return wall_to_utc(local.replace(tzinfo=None, year=year, month=month, fold=0))


def wall_to_utc(wall: dt.datetime) -> dt.datetime:
    """An Athens wall time as an instant: its first occurrence, or for a skipped wall time the
    moment the clocks jump (found by bisection over the skipped hour)."""
    local = wall.replace(tzinfo=ATHENS, fold=0)
    if _exists(local):
        return local.astimezone(UTC)
    low = wall.replace(tzinfo=ATHENS, fold=1).astimezone(UTC)  # before the jump
    high = local.astimezone(UTC)  # after it
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(ATHENS).replace(tzinfo=None) < wall:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


@dataclass(frozen=True)
class Due:
    stage: str
    at: dt.datetime  # UTC
    basis: str  # what the clock counts from, for people: "became aware", ...


def schedule(
    aware: dt.datetime,
    notified: dt.datetime | None = None,
    closed: dt.datetime | None = None,
) -> list[Due]:
    """Every report this incident owes, given when the entity became aware, when (if) the
    notification was submitted and when (if) the incident was handled. Before a notification is
    submitted the final report's month counts from the notification's own deadline: the latest
    it can start."""
    dues = [
        Due("early_warning", aware + EARLY_WARNING, "became aware"),
        Due("notification", aware + NOTIFICATION, "became aware"),
    ]
    month_from = notified if notified is not None else aware + NOTIFICATION
    basis = "notification submitted" if notified is not None else "notification deadline"
    after_notification = add_month(month_from)
    if closed is not None and closed <= after_notification:
        return [*dues, Due("final", after_notification, basis)]
    dues.append(Due("progress", after_notification, basis))
    if closed is not None:
        dues.append(Due("final", add_month(closed), "incident handled"))
    return dues


def athens(instant: dt.datetime) -> str:
    """For people: 2026-03-29 10:15 EEST."""
    return instant.astimezone(ATHENS).strftime("%Y-%m-%d %H:%M %Z")


def iso(instant: dt.datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
