"""``FakeClock``: the injected time of the component tests (as pyinstrument's fake_time_util)."""

from __future__ import annotations


class FakeClock:
    """Seconds that move only when the test says so, or by ``step`` at each reading.

    Pass the clock itself as a component's ``clock`` and ``clock.sleep``/``clock.async_sleep`` as its
    sleeps: each sleep is recorded in ``sleeps`` and moves the clock, so no test waits for real.
    Worker threads may read it while the test moves it: a reading writes ``now`` only when ``step`` is
    set, so it never puts back a value the test has just replaced.

    Args:
        now: The first reading; far from 0 by default, so a timestamp of 0.0 never reads as "now".
        step: Seconds added before each reading (a request timed by two readings lasts one step).
    """

    def __init__(self, now: float = 1000.0, *, step: float = 0.0) -> None:
        self.now = now
        self.step = step
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        if self.step:
            self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
