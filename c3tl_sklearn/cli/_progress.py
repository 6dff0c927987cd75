"""Progress of a benchmark run: a tqdm bar on a terminal, one timed line per step elsewhere."""

from __future__ import annotations

import sys
import time


class _Progress:
    """A tqdm bar on a terminal, otherwise one line per step with the elapsed time."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total = max(int(total), 1)
        self.done = 0
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:  # pragma: no cover - tqdm comes with optuna
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.total, file=self.stream, unit="step",
                                dynamic_ncols=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def step(self, message: str) -> None:
        self.done += 1
        if self.total < self.done:
            self.total = self.done
            if self.bar is not None:
                self.bar.total = self.total
        if self.bar is not None:
            self.bar.set_description_str(message[:70])
            self.bar.update(1)
        elif self.enabled:
            width = len(str(self.total))
            print(f"[{self.elapsed():8.1f}s] {self.done:>{width}}/{self.total} {message}",
                  file=self.stream, flush=True)

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"[{self.elapsed():8.1f}s] {message}"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_bar(total: int | None, description: str, unit: str, enabled: bool = True):
    """A tqdm bar on stderr when it is a terminal (and ``enabled``); otherwise ``None``.

    Logs and pipes get no bar: a redirected stderr would fill with carriage
    returns, and callers print one summary line instead.
    """
    if not enabled or not getattr(sys.stderr, "isatty", lambda: False)():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with skorch
        return None
    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def epoch_callback(bar):
    """A skorch callback that advances ``bar`` by one per epoch, showing the losses."""
    from skorch.callbacks import Callback

    class _EpochBar(Callback):
        def on_train_begin(self, net, **kwargs):
            if bar.total is None:
                bar.total = net.max_epochs
                bar.refresh()

        def on_epoch_end(self, net, **kwargs):
            row = net.history[-1]
            losses = {k: f"{row[k]:.4g}" for k in ("train_loss", "valid_loss") if k in row}
            bar.set_postfix(losses, refresh=False)
            bar.update(1)

    return _EpochBar()
