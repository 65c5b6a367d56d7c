"""How ``mnistctl tune`` looks in a terminal: a live table of the trials (or a plain line per
finished trial elsewhere), and the summary lines of a finished study. Built with Rich; torch-free."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mnistctl.cli.render import fits, pct
from mnistctl.training.tune import TuneHooks


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class TuneView(TuneHooks):
    """The trials of a search: a live table on a terminal, a plain line per finished trial elsewhere."""

    def __init__(self, console: Console, objective: str) -> None:
        from rich.live import Live

        self.console, self.objective = console, objective
        self.rows: dict[int, tuple[str, dict[str, Any], str, str, str]] = {}
        self.live = Live(console=console, auto_refresh=False, transient=False) if console.is_terminal else None
        if self.live is not None:
            self.live.start()

    def _table(self) -> Table:
        """A column per setting; in a terminal too narrow for that, the settings in one wrapped column."""
        title = f"Trials ({self.objective} on the validation split)"
        names = sorted({k for _, params, *_ in self.rows.values() for k in params})
        rows = sorted(self.rows.items())[-30:]
        styles = {"complete": "green", "pruned": "yellow", "failed": "red"}
        table = Table(title=title)
        for col in ("trial", "state", *names, self.objective, "epochs", "seconds"):
            table.add_column(col, justify="right" if col != "state" else "left", no_wrap=True)
        for number, (state, params, value, epochs, seconds) in rows:
            table.add_row(str(number), Text(state, style=styles.get(state, "")),
                          *(_param(params.get(n, "")) for n in names), value, epochs, seconds)
        if fits(self.console, table):
            return table
        compact = Table(title=title, box=None, pad_edge=False)
        for col, justify in (("#", "right"), ("state", "left"), (self.objective, "right"), ("settings", "left")):
            compact.add_column(col, justify=justify, no_wrap=col != "settings")  # type: ignore[arg-type]
        for number, (state, params, value, _, _) in rows:
            compact.add_row(str(number), Text(state, style=styles.get(state, "")), value,
                            " ".join(f"{k}={_param(v)}" for k, v in params.items()))
        return compact

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None:
        self.rows[number] = ("running", params, "", "", "")
        if self.live is not None:
            self.live.update(self._table(), refresh=True)

    def on_trial_end(self, record: Any) -> None:
        value = "" if record.value is None else (pct(record.value) if self.objective == "val_acc"
                                                 else f"{record.value:.4f}")
        seconds = "" if record.seconds is None else f"{record.seconds:.1f}"
        self.rows[record.number] = (record.state, record.params, value, str(record.epochs), seconds)
        if self.live is not None:
            self.live.update(self._table(), refresh=True)
            return
        params = ", ".join(f"{k}={_param(v)}" for k, v in record.params.items())
        self.console.print(f"trial {record.number} {record.state}" + (f" {self.objective} {value}" if value else "")
                           + f" after {record.epochs} epoch{'s' if record.epochs != 1 else ''}"
                           + (f", {seconds} s" if seconds else "") + f" ({escape(params)})"
                           + (f": {escape(record.error)}" if record.error else ""),
                           highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def tune_summary(result: Any) -> list[str]:
    counts = result.to_dict()["counts"]
    said = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    lines = [f"Study {escape(result.name)} ({escape(str(result.directory))}): {len(result.trials)} trials ({said}); "
             f"this process searched for {result.seconds:.0f} s."]
    best = result.best
    if best is not None:
        value = pct(best.value) if result.objective == "val_acc" else f"{best.value:.4f}"
        params = ", ".join(f"{k}={_param(v)}" for k, v in best.params.items())
        lines.append(f"Best: trial {best.number}, {result.objective} [bold green]{value}[/] ({escape(params)}).")
    lines.append(f"Files: {', '.join(escape(str(p)) for p in result.files)}")
    if best is not None:
        lines.append(f"Next: mnistctl train --config {escape(str(result.directory / 'best-config.json'))}")
    return lines
