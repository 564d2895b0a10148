"""``dialin evaluate`` and ``dialin discover``: the engine on files, no Kafka.

Both commands read a .csv/.jsonl file, embed it once, and run the LLM-in-the-loop
strategy the factory builds from settings and options. ``evaluate`` measures it against
k-means told the true number of labels; ``discover`` writes the intents as JSON and an
HTML report. stdout carries only results (exactly one JSON object with ``--json``);
progress and stage lines go to stderr. Every user mistake (file, field, encoding,
option value, missing LLM URL) is one ``error:`` line on stderr and exit status 2
(:mod:`dialin.streams.cli` lists the exit codes), never a traceback. :func:`register`
adds both commands to the ``dialin`` app.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, get_args

import numpy as np
import typer
from typer.core import TyperCommand

from ._exit import USER_ERROR, invalid_setting, unparsable_setting
from ..settings import JudgeName, NamerName, StrategyName

#: Rows embedded per progress-bar step (and per cache round trip).
_EMBED_CHUNK = 512


class _OneLineErrors(TyperCommand):
    """Usage errors (bad option value, missing option) as one line, not a rich panel."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.TyperException as exc:
            # typer >= 0.25 vendors click: its UsageError derives from TyperException.
            if not hasattr(exc, "format_message"):
                raise
            _fail(exc.format_message(), code=getattr(exc, "exit_code", USER_ERROR))


def _fail(message: str, code: int = USER_ERROR) -> None:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a user can cause into one stderr line and exit status 2.

    Library output that would land on stdout goes to stderr, so ``--json`` output
    stays exactly one JSON object whatever a dependency prints.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError as UnparsableSetting

    from dialin.models import InputError

    from ..factory import SettingsError

    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    except (InputError, SettingsError) as exc:
        _fail(str(exc))
    except ValidationError as exc:  # a bad DIALIN_* variable read by get_settings()
        _fail(invalid_setting(exc))
    except UnparsableSetting as exc:  # a DIALIN_* dict or list that is not JSON
        _fail(unparsable_setting(exc))
    except (ValueError, TypeError, OSError, ImportError) as exc:
        _fail(f"{type(exc).__name__}: {exc}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Engine warnings (typed, e.g. an LLM that failed every call) as one stderr line."""
    typer.echo(f"warning: {' '.join(str(message).split())} ({category.__name__})", err=True)


def _stage(message: str) -> None:
    typer.echo(f"dialin: {message}", err=True)


# --- options shared by both commands (envvar where a setting exists) -------------------

def _choices(name: str, *values: str) -> type[Enum]:
    """A ``str`` Enum whose values typer offers as an option's choices."""
    return Enum(name, [(value, value) for value in values], type=str)


#: Not settings, so not in :mod:`..settings`: the factory's names (``factory.PRUNERS``,
#: ``factory.SIMULATED_JUDGES``), written out here because importing the factory loads the
#: engine (seconds) and ``dialin --help`` must stay instant; the CLI tests hold them equal.
PRUNE_NAMES = ("none", "heuristic", "llm")
SIMULATED_JUDGE_NAMES = ("oracle", "oracle-sampled")

JudgeChoice = _choices("JudgeChoice", *get_args(JudgeName))
NamerChoice = _choices("NamerChoice", *get_args(NamerName))
StrategyChoice = _choices("StrategyChoice", *get_args(StrategyName))
PruneChoice = _choices("PruneChoice", *PRUNE_NAMES)
#: ``evaluate`` also offers the simulated judges that read the gold labels.
EvalJudge = _choices("EvalJudge", *get_args(JudgeName), *SIMULATED_JUDGE_NAMES)


def _value(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


InputArg = Annotated[Path, typer.Argument(help="Utterances: a .csv with a header row or a .jsonl file.",
                                          show_default=False)]
TextField = Annotated[str, typer.Option("--text-field", help="Field holding the utterance text.")]
RoleField = Annotated[str | None, typer.Option(
    "--role-field", help="Field holding the speaker role (customer/agent): each role is clustered apart.")]
Strategy = Annotated[StrategyChoice | None, typer.Option(
    "--strategy", envvar="DIALIN_STRATEGY",
    help="budget: judge-call budget strategy (default); paper: the paper's Algorithm 1.")]
Prune = Annotated[PruneChoice, typer.Option(
    "--prune",
    help="Search-space pruning of the paper strategy (§6.4.2): none (every candidate count, "
         "default), heuristic, or llm (the --llm-url server proposes the counts). The budget "
         "strategy ignores it.")]
JudgeBudget = Annotated[float | None, typer.Option(
    "--judge-budget", envvar="DIALIN_JUDGE_BUDGET",
    help="Judge calls per utterance the budget strategy may spend (default 0.3).")]
NamerOpt = Annotated[NamerChoice | None, typer.Option(
    "--namer", envvar="DIALIN_NAMER",
    help="Intent namer: keywords (offline), openai (OpenAI-compatible server), vllm (in-process).")]
EmbedderOpt = Annotated[str | None, typer.Option(
    "--embedder", envvar="DIALIN_EMBEDDER",
    help="minilm (default), lsa (fitted on the input; best for Chinese), a saved LSA folder, "
         "or a sentence-transformers name or path.")]
EmbeddingCache = Annotated[Path | None, typer.Option(
    "--embedding-cache", envvar="DIALIN_EMBEDDING_CACHE_DIR",
    help="Folder of an on-disk embedding cache, so no utterance is embedded twice across runs.")]
LLMUrl = Annotated[str | None, typer.Option(
    "--llm-url", envvar="DIALIN_LLM_URL", help="Base URL of an OpenAI-compatible server, e.g. http://host:8000/v1.")]
LLMModel = Annotated[str | None, typer.Option(
    "--llm-model", envvar="DIALIN_LLM_MODEL", help="Model name the LLM server serves.")]
LLMKey = Annotated[str | None, typer.Option(
    "--llm-api-key", envvar="DIALIN_LLM_API_KEY", show_default=False, help="API key for the LLM server.")]
Seed = Annotated[int | None, typer.Option(
    "--seed", envvar="DIALIN_RANDOM_STATE", help="Random seed of the run (default 0).")]


def _settings(**overrides: Any):
    from ..factory import configure
    from ..settings import get_settings

    if overrides.get("embedding_cache_dir") is not None:
        overrides["embedding_cache_dir"] = str(overrides["embedding_cache_dir"])
    return configure(get_settings(), **overrides)


# --- evaluate ---------------------------------------------------------------------------

def evaluate(
    input: InputArg,
    text_field: TextField,
    label_field: Annotated[str, typer.Option("--label-field", help="Field holding the gold intent label.")],
    role_field: RoleField = None,
    judge: Annotated[EvalJudge | None, typer.Option(
        "--judge", envvar="DIALIN_JUDGE",
        help="Coherence judge. oracle and oracle-sampled are simulated judges that know the "
             "gold labels (evaluation only, never an LLM): oracle reads every member of a "
             "cluster, oracle-sampled only the prompt's sample, answers the same prompt the "
             "same way and is lenient with nearly pure clusters.")] = None,
    judge_accuracy: Annotated[float, typer.Option(
        "--judge-accuracy", help="How often a simulated (oracle) judge is right.")] = 0.96,
    judge_budget: JudgeBudget = None,
    strategy: Strategy = None,
    prune: Prune = PruneChoice["none"],
    namer: NamerOpt = None,
    embedder: EmbedderOpt = None,
    embedding_cache: EmbeddingCache = None,
    llm_url: LLMUrl = None,
    llm_model: LLMModel = None,
    llm_api_key: LLMKey = None,
    seed: Seed = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")] = False,
) -> None:
    """Score the LLM-in-the-loop pipeline against k-means told the true number of intents.

    Both run in this process on the same embeddings; NMI and ARI are computed on the
    rows that have a label (unlabelled rows are left out, with a note on stderr).
    """
    with _user_errors():
        settings = _settings(embedder=embedder, embedding_cache_dir=embedding_cache, namer=_value(namer),
                             strategy=_value(strategy), judge_budget=judge_budget, llm_url=llm_url,
                             llm_model=llm_model, llm_api_key=llm_api_key, random_state=seed)
        from dialin.models import load_table

        table = _labelled(load_table(input, text_field, label_field=label_field,
                                     role_field=role_field))
        y = table.labels
        from ..factory import build_spend_cap

        spend = build_spend_cap(settings, per_run=True)  # DIALIN_LLM_MAX_*_PER_HOUR apply here too
        backends = _backends(settings, judge=_value(judge), y_true=y, accuracy=judge_accuracy,
                             spend=spend)
        X, emb = _embed(settings, table.texts)
        baseline = _baseline(X, y, settings.random_state)
        run = _run_itl(settings, X, table.texts, table.roles, emb, *backends, prune=_value(prune),
                       spend=spend)
        # The judge's card, not only its name: a simulated judge must never read as an LLM.
        report = {"baseline": baseline, "itl": {**_scores(run, y), "judge": backends[0].describe()}}
    if as_json:
        typer.echo(_dumps(report))
    else:
        typer.echo(_evaluation_table(report, n=len(y)))


def _labelled(table):
    """Only the rows that carry a gold label: evaluation needs one per row."""
    from dataclasses import replace

    keep = [i for i, label in enumerate(table.labels) if label is not None]
    if len(keep) < 2:
        from dialin.models import InputError

        raise InputError(f"{table.source}: fewer than 2 rows have a label to evaluate against")
    if len(keep) == len(table.labels):
        return table
    _stage(f"{len(table.labels) - len(keep)} of {len(table.labels)} rows have no label; "
           "they are left out of the evaluation")
    pick = lambda values: None if values is None else [values[i] for i in keep]  # noqa: E731
    return replace(table, texts=pick(table.texts), labels=pick(table.labels),
                   roles=pick(table.roles), row_ids=pick(table.row_ids))


def _baseline(X: np.ndarray, y: Sequence[str], seed: int) -> dict:
    from dialin.models import ari, cluster, nmi

    k = len(set(y))
    _stage(f"baseline: k-means with the true number of labels (k={k})")
    started = time.perf_counter()
    labels = cluster(X, k, method="kmeans", random_state=seed)
    seconds = time.perf_counter() - started
    return {"nmi": round(nmi(y, labels), 4), "ari": round(ari(y, labels), 4),
            "n_clusters": int(len(np.unique(labels))), "seconds": round(seconds, 3)}


def _scores(run: ITLRun, y: Sequence[str]) -> dict:
    from dialin.models import ari, nmi

    return {"nmi": round(nmi(y, run.labels), 4), "ari": round(ari(y, run.labels), 4),
            **run.figures()}


def _evaluation_table(report: dict, n: int) -> str:
    b, i = report["baseline"], report["itl"]
    judge = i["judge"]
    rows = [("", "NMI", "ARI", "clusters", "judge calls", "seconds"),
            (f"k-means (k={b['n_clusters']}, told)", f"{b['nmi']:.3f}", f"{b['ari']:.3f}",
             str(b["n_clusters"]), "-", f"{b['seconds']:.1f}"),
            (f"ITL {i['strategy']} / {judge['backend']}" + (" (simulated)" if judge["simulated"] else ""),
             f"{i['nmi']:.3f}", f"{i['ari']:.3f}",
             str(i["n_clusters"]), f"{i['judge_calls']} ({i['judge_calls_per_utterance']:.2f}/utt)",
             f"{i['seconds']:.1f}")]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    return "\n".join([f"{n} labelled utterances", *lines, _judge_note(judge)])


def _judge_note(judge: dict) -> str:
    """One line under the table: which judge, and whether it was a simulated one."""
    if not judge["simulated"]:
        return f"judge: {judge['backend']}"
    params = ", ".join(f"{k} {v}" for k, v in judge.items()
                       if k not in ("backend", "simulated", "knows_gold_labels", "sees"))
    return (f"judge: {judge['backend']}, a SIMULATED judge that knows the gold labels "
            f"(sees {judge['sees']}; {params}); not an LLM")


# --- the shared pipeline ------------------------------------------------------------------

def _embed(settings, texts: Sequence[str]) -> tuple[np.ndarray, Any]:
    """Embed ``texts`` with the configured embedder, with a progress bar on stderr."""
    from tqdm import tqdm

    from ..factory import build_embedder

    started = time.perf_counter()
    embedder = build_embedder(settings, fit_texts=texts if settings.embedder == "lsa" else None)
    parts = []
    with tqdm(total=len(texts), desc="embedding", unit="utt", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(texts), _EMBED_CHUNK):
            chunk = texts[start:start + _EMBED_CHUNK]
            if start == 0:
                parts.append(_first_encode(embedder, chunk, settings.embedder))
            else:
                parts.append(embedder.encode(chunk))
            bar.update(len(chunk))
            if start == 0 and len(texts) > _EMBED_CHUNK:
                # Said only once the model has loaded and answered, so a bad --embedder
                # stays a one-line error; long runs without a terminal still see progress.
                _stage(f"embedding {len(texts)} utterances with {embedder.name}")
    X = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
    _stage(f"embedded {len(texts)} utterances with {embedder.name} in "
           f"{time.perf_counter() - started:.1f}s"
           + (f" (cache {settings.embedding_cache_dir})" if settings.embedding_cache_dir else ""))
    return X, embedder


def _first_encode(embedder, texts: Sequence[str], name: str) -> np.ndarray:
    """The first call loads the model: a wrong name or path is the user's option error."""
    from ..factory import SettingsError

    try:
        return embedder.encode(texts)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"invalid --embedder / DIALIN_EMBEDDER {name!r}: {exc}") from None


def _backends(settings, judge: str | None = None, y_true: Sequence[str] | None = None,
              accuracy: float = 0.96, spend: Any = None) -> tuple[Any, Any]:
    """Judge and namer, built before any slow work so a configuration mistake fails fast;
    ``spend`` is the run's LLM spend cap (:func:`~..factory.build_spend_cap`), if any."""
    from ..factory import build_judge, build_namer

    return (build_judge(settings, judge=judge, y_true=y_true, accuracy=accuracy, spend=spend),
            build_namer(settings, spend=spend))


@dataclass(frozen=True)
class ITLRun:
    """One fit of the strategy, as both commands report it (what :func:`_run_itl` returns).

    The fitted result (``labels``, ``intents``, ``log``) and the run's figures; seconds
    are rounded to the millisecond as they are reported.
    """

    labels: np.ndarray  # cluster per utterance; -1 where no Good verdict covers it
    intents: list[Any]  # the estimator's ``intents_``; members index the input rows
    log: list[dict]  # the iteration log, one row per step (with "role" when per role)
    strategy: str
    judge: str  # backend name
    namer: str  # backend name
    judge_budget: float | None  # calls per utterance of the budget strategy, else None
    prune: str  # the paper strategy's pruning; "none" when no pruner was built
    n_utterances: int
    judge_calls: int
    calls_by_phase: dict[str, int]
    prune_calls: int  # requests the pruner sent (not cached)
    seconds: float  # the fit, naming included
    naming_seconds: float
    llm: dict | None = None  # LLM accounting, when a backend talks to an LLM
    prompt_version: str | None = None  # of the prompt files the LLM backends send
    llm_spend: dict | None = None  # the spend cap's figures and fallbacks, when capped

    @property
    def n_clusters(self) -> int:
        return int(len(np.unique(self.labels[self.labels >= 0])))

    @property
    def judge_calls_per_utterance(self) -> float:
        return round(self.judge_calls / self.n_utterances, 4)

    def figures(self) -> dict[str, Any]:
        """The run's numbers and names, in the order ``evaluate --json`` reports them."""
        out = {"n_clusters": self.n_clusters, "judge_calls": self.judge_calls,
               "judge_calls_per_utterance": self.judge_calls_per_utterance,
               "calls_by_phase": self.calls_by_phase, "seconds": self.seconds,
               "naming_seconds": self.naming_seconds, "strategy": self.strategy,
               "judge_budget": self.judge_budget, "prune": self.prune,
               "prune_calls": self.prune_calls, "judge": self.judge, "namer": self.namer,
               "n_utterances": self.n_utterances}
        if self.llm is not None:
            out.update(llm=self.llm, prompt_version=self.prompt_version)
        if self.llm_spend is not None:
            out.update(llm_spend=self.llm_spend)
        return out


def _run_itl(settings, X: np.ndarray, texts: Sequence[str], roles: Sequence[str | None] | None,
             embedder, judge_obj, namer_obj, prune: str | None = None, spend: Any = None) -> ITLRun:
    """Build the strategy from settings and fit it on ``X`` with the given backends
    (``spend``: the LLM spend cap they were built with, for the pruner and the report)."""
    from ._timing import TimedNamer
    from ..factory import build_estimator, llm_stats, prompt_version, pruner_of, resolved_budget

    role_aware = roles is not None
    timed_namer = TimedNamer(namer_obj)
    estimator = build_estimator(settings, judge_obj, timed_namer, label_embedder=embedder,
                                role_aware=role_aware, prune=prune, spend=spend)
    pruner = pruner_of(estimator)
    n = len(texts)
    _stage(f"LLM-in-the-loop clustering: strategy {settings.strategy}, judge {judge_obj.backend}"
           + (" (simulated: knows the gold labels)" if judge_obj.simulated else "")
           + f", namer {namer_obj.backend}"
           + (f", budget {resolved_budget(settings, judge_obj)} calls/utterance"
              if settings.strategy == "budget" else "")
           + (f", pruning {prune}" if pruner is not None else "")
           + (", per role" if role_aware else ""))
    started = time.perf_counter()
    if role_aware:
        estimator.fit(X, texts=list(texts), roles=list(roles))
    else:
        estimator.fit(X, texts=list(texts))
    seconds = time.perf_counter() - started
    labels = np.asarray(estimator.labels_)
    calls = int(estimator.n_judge_calls_)
    stats = llm_stats(judge_obj, namer_obj, pruner)
    # The pruner is built for this run: its stats are this run's (every role's) requests.
    prune_calls = 0 if stats is None else sum(
        k for outcome, k in stats["calls"].get("prune", {}).items() if outcome != "cached")
    run = ITLRun(
        labels=labels,
        intents=list(estimator.intents_),
        log=_flat_log(estimator.log_),
        strategy=settings.strategy,
        judge=judge_obj.backend,
        namer=namer_obj.backend,
        judge_budget=resolved_budget(settings, judge_obj) if settings.strategy == "budget" else None,
        prune=prune if pruner is not None else "none",
        n_utterances=n,
        judge_calls=calls,
        calls_by_phase=dict(estimator.calls_by_phase_),
        prune_calls=prune_calls,
        seconds=round(seconds, 3),
        naming_seconds=round(timed_namer.seconds, 3),
        llm=stats,
        prompt_version=None if stats is None else prompt_version(judge_obj, namer_obj, pruner),
        llm_spend=None if spend is None else spend.summary(),
    )
    _stage(f"{run.n_clusters} clusters, {calls} judge calls in {seconds:.1f}s")
    if run.llm_spend is not None:
        _stage(_spend_line(run.llm_spend))
    return run


def _spend_line(spend: dict) -> str:
    """The run's LLM spend against its caps, and what the offline fallback answered."""
    caps = ", ".join(f"{spend[k]} of {spend[f'max_{k}']} {k}" for k in ("calls", "tokens")
                     if spend[f"max_{k}"] is not None)
    fell = sum(n for by_reason in spend["fallbacks"].values() for n in by_reason.values())
    if not fell:
        return f"LLM spend: {caps}; no cap reached"
    detail = ", ".join(f"{task} {n} ({reason})" for task, by_reason in spend["fallbacks"].items()
                       for reason, n in by_reason.items())
    return f"LLM spend: {caps}; cap reached, {fell} questions answered offline: {detail}"


def _flat_log(log: Any) -> list[dict]:
    """The iteration log as rows; a role-aware fit keeps one log per role (a dict)."""
    if not log:
        return []
    if isinstance(log, dict):
        return [{"role": role, **row} for role, rows in log.items() for row in rows or []]
    return [dict(row) for row in log]


def _dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259): an infinite or missing number, such as the paper's
    good/bad rate with no Bad cluster, becomes null instead of ``Infinity``."""
    return json.dumps(_finite(obj), ensure_ascii=False, indent=indent, default=_jsonable,
                      allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and other odd values in logs, as JSON can take them."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


# --- discover ---------------------------------------------------------------------------

def discover(
    input: InputArg,
    text_field: TextField,
    role_field: RoleField = None,
    id_field: Annotated[str | None, typer.Option(
        "--id-field", help="Field holding a row id, used for intent members (default: the row number).")] = None,
    judge: Annotated[JudgeChoice | None, typer.Option(
        "--judge", envvar="DIALIN_JUDGE",
        help="Coherence judge: heuristic (offline), openai (OpenAI-compatible server), vllm.")] = None,
    namer: NamerOpt = None,
    strategy: Strategy = None,
    prune: Prune = PruneChoice["none"],
    judge_budget: JudgeBudget = None,
    embedder: EmbedderOpt = None,
    embedding_cache: EmbeddingCache = None,
    llm_url: LLMUrl = None,
    llm_model: LLMModel = None,
    llm_api_key: LLMKey = None,
    seed: Seed = None,
    max_llm_calls: Annotated[int | None, typer.Option(
        "--max-llm-calls", envvar="DIALIN_LLM_MAX_CALLS_PER_HOUR",
        help="Most LLM requests (retries included) this run may send per hour, judge, namer "
             "and pruner together; the largest clusters are asked first, the rest go to the "
             "offline judge and namer (DIALIN_LLM_CAP_ACTION=wait: to the next hour).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the intents (JSON).")] = Path("intents.json"),
    report: Annotated[Path | None, typer.Option(
        "--report", help="Where to write the self-contained HTML report.")] = None,
    timings: Annotated[Path | None, typer.Option(
        "--timings", help="Also write the seconds of each stage (load, embed, cluster, name, "
                          "write, report) as JSON to this file.")] = None,
) -> None:
    """Discover the intents in a file of utterances; write them as JSON (and an HTML report)."""
    with _user_errors():
        from ._timing import Stages

        started = time.perf_counter()
        stages = Stages()
        settings = _settings(embedder=embedder, embedding_cache_dir=embedding_cache, judge=_value(judge),
                             namer=_value(namer), strategy=_value(strategy), judge_budget=judge_budget,
                             llm_url=llm_url, llm_model=llm_model, llm_api_key=llm_api_key,
                             random_state=seed, llm_max_calls_per_hour=max_llm_calls)
        from dialin.models import InputError, load_table

        table = load_table(input, text_field, role_field=role_field, id_field=id_field)
        if len(table.texts) < 2:
            raise InputError(f"{table.source}: one utterance; discovery needs at least 2")
        from ..factory import build_redactor, build_spend_cap

        spend = build_spend_cap(settings, per_run=True)
        backends = _backends(settings, spend=spend)
        build_redactor(settings)  # a bad DIALIN_PII_ENTITIES fails before the slow work
        stages.done("load")
        X, emb = _embed(settings, table.texts)
        stages.done("embed")
        run = _run_itl(settings, X, table.texts, table.roles, emb, *backends, prune=_value(prune),
                       spend=spend)
        stages.done("cluster", name=run.naming_seconds)
        doc = intents_document(table, run, settings, embedder_name=emb.name,
                               seconds=time.perf_counter() - started)
        _write_text(out, _dumps(doc, indent=1) + "\n")
        _stage(f"wrote {len(doc['intents'])} intents to {out}")
        stages.done("write")
        if report is not None:
            from ..tools.report import render_report

            _write_text(report, render_report(doc, X, run.labels, texts=table.texts,
                                                     seed=settings.random_state))
            _stage(f"wrote the report to {report}")
            stages.done("report")
        if timings is not None:
            _write_text(timings, _dumps(stages.as_dict(), indent=1) + "\n")
    unassigned = doc["metadata"]["n_unassigned"]
    typer.echo(f"{len(doc['intents'])} intents in {len(table)} utterances"
               + (f", {unassigned} unassigned (no Good verdict covers them)" if unassigned else "")
               + f" -> {out}" + (f", {report}" if report else ""))


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def intent_id(row_ids: Sequence[Any], role: str | None) -> str:
    """A stable id from what an intent is: its role and its member rows, in any order.

    The same input and seed give the same ids; an intent that keeps its members keeps
    its id across runs even when cluster numbering changes.
    """
    key = json.dumps([role, sorted(map(str, row_ids))], ensure_ascii=False)
    return "intent-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def intents_document(table, run: ITLRun, settings, embedder_name: str, seconds: float) -> dict:
    """The ``discover`` output: run metadata, the iteration log, intents largest first.

    Examples and labels are PII-redacted unless ``settings.pii_redaction`` is off.
    """
    from ..factory import build_redactor

    redactor = build_redactor(settings)
    n = len(table)
    intents = sorted(run.intents, key=lambda it: (-it.size, it.intent_id))
    records = []
    for it in intents:
        rows = [table.row_ids[i] for i in it.members]
        verdict = it.verdict
        record = {
            "id": intent_id(rows, it.role),
            "cluster": int(it.intent_id),
            # An LLM namer answers "" when it gave no valid label: never an empty name.
            "label": (redactor.redact_label(it.label) if redactor is not None and it.label
                      else it.label) or f"unnamed-{it.intent_id}",
            "role": it.role,
            "size": it.size,
            "share": round(it.size / n, 4),
            "rows": rows,
            "examples": (redactor.redact_many(it.examples[:10]) if redactor is not None
                         else list(it.examples[:10])),
            "verdict": None if verdict is None or verdict.good is None
            else ("Good" if verdict.good else "Bad"),
            "confidence": None if verdict is None else verdict.confidence,
        }
        if verdict is not None and verdict.fallback is not None:
            # The offline judge gave the verdict: an LLM spend cap (--max-llm-calls) was reached.
            record["fallback"] = verdict.fallback
        records.append(record)
    labels = run.labels
    metadata = {
        "dialin_version": version("dialin"),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": table.source,
        "n_utterances": n,
        "n_intents": len(records),
        "n_unassigned": int((labels < 0).sum()),
        "embedder": embedder_name,
        "strategy": run.strategy,
        "judge_budget": run.judge_budget,
        "judge": run.judge,
        "namer": run.namer,
        "prompt_version": run.prompt_version,
        "llm": run.llm,
        "llm_spend": run.llm_spend,
        "judge_calls": run.judge_calls,
        "judge_calls_per_utterance": run.judge_calls_per_utterance,
        "calls_by_phase": run.calls_by_phase,
        "seed": settings.random_state,
        "clustering_seconds": run.seconds,
        "seconds": round(seconds, 3),
    }
    unassigned = [table.row_ids[i] for i in np.flatnonzero(labels < 0)]
    return {"metadata": metadata, "log": run.log, "intents": records,
            "unassigned_rows": unassigned}


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``discover`` to the ``dialin`` app."""
    for command in (evaluate, discover):
        app.command(cls=_OneLineErrors)(command)
