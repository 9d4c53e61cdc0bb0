"""The outbox's one backoff, for a send that failed and for a delivery the platform reported failed
later: each failed try waits twice as long as the one before, from
`notifications.backoff_first_seconds` up to `backoff_max_seconds`, for a time drawn from the
second half of that wait (so that alerts that failed together do not come back together), and
the try that makes `max_attempts` leaves the alert dead."""

from datetime import UTC, datetime, timedelta

from bot import outbox
from bot.platform.settings import NotificationsConfig
from models.enums import NotificationStatus

NOW = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)
POLICY = NotificationsConfig(
    grace_seconds=0, digest_at="10:00", max_attempts=6, backoff_first_seconds=2, backoff_max_seconds=20,
    claim_seconds=60, batch_size=200, retention_days_after_discharge=30,
)  # fmt: skip


def waits(attempts: int, draws: int = 300) -> list[float]:
    return [(outbox.retry_at(POLICY, attempts, NOW) - NOW).total_seconds() for _ in range(draws)]


def test_each_failed_try_waits_twice_as_long_up_to_the_maximum_drawn_from_its_second_half():
    for attempts, longest in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 20), (12, 20)]:
        drawn = waits(attempts)
        assert longest / 2 <= min(drawn) and max(drawn) <= longest, attempts
        # Spread over the second half, not one time for all: 300 draws cover most of it.
        assert max(drawn) - min(drawn) > longest / 4, attempts


def test_a_failed_try_before_the_last_waits_and_counts_and_the_last_leaves_the_alert_dead():
    error = "Internal Server Error " * 20  # longer than the row keeps
    waiting = outbox.retried(POLICY, 4, NOW, error).values
    assert (waiting["status"], waiting["attempts"], waiting["error"]) == (
        NotificationStatus.PENDING, 5, error[:300]
    )  # fmt: skip
    # The 5th failed try: 2 s doubled 4 times, 32 s, is more than the 20 s most.
    assert NOW + timedelta(seconds=10) <= waiting["not_before"] <= NOW + timedelta(seconds=20)

    dead = outbox.retried(POLICY, 5, NOW, error).values
    assert (dead["status"], dead["attempts"], dead["error"]) == (NotificationStatus.DEAD, 6, error[:300])
    assert "not_before" not in dead
