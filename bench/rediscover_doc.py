"""Write the "Replay discovery over a range (dialin rediscover)" section of docs/operate.md
from a real run.

Usage: python bench/rediscover_doc.py [--out docs/operate.md]

Every command shown is run here as a user runs it (the ``dialin`` console script in a
child process, on an embedded broker, in a scratch folder) and its output pasted as it
came, shortened only where the section says so. The section sits between
``<!-- rediscover:start -->`` and ``<!-- rediscover:end -->``; nothing else in the file
is touched. No number or output in it is typed by hand.

The LLM is the project's OpenAI-protocol test server (``tests/openai_server.py``, real
HTTP on loopback) with a scripted answer: Good when one content word is in at least 60%
of the utterances shown, and the name ``ask-<that word>``; the section says so. The utterances are the 150 rows of five
intents of ``tests/data/banking77_sample.csv``; the embedder is LSA fitted on that sample, so
the run needs no model download.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _doc import markers, provenance, write_section
from catalog_doc import Session

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SECTION = "rediscover"
#: stderr lines worth showing: the diff, the summary, errors.
SHOWN = ("rediscovered", "same ", "matches ", "new ", "dropped ", "live-only ", "error",
         "warning")


def shown(s: Session, *args: str, stdout_lines: int | None = None, note: str = "",
          check: bool = True) -> str:
    """A fenced block: the command, its stdout (first lines) and the stderr lines that matter."""
    done = s.run(*args, check=check)
    out = done.stdout.rstrip("\n").splitlines()
    if stdout_lines is not None and len(out) > stdout_lines:
        out = out[:stdout_lines] + [f"... ({len(out) - stdout_lines} more lines)"]
    err = [line for line in done.stderr.rstrip("\n").splitlines() if line.startswith(SHOWN)]
    body = "\n".join(["$ dialin " + " ".join(args), *out, *err])
    return f"{note}```console\n{body}\n```\n"


#: Words too common to name or hold a cluster together.
STOP = {"have", "that", "this", "with", "what", "been", "does", "from", "when", "there",
        "your", "they", "will", "about", "would", "could", "just", "still", "into", "need"}


def _top_word(texts: list[str]) -> tuple[str, float]:
    """The most frequent content word of ``texts`` and the share of texts that have it."""
    seen = Counter(w for text in texts for w in set(re.findall(r"[a-z]{4,}", text.lower()))
                   if w not in STOP)
    if not seen:
        return "help", 0.0
    word, n = min(seen.items(), key=lambda kv: (-kv[1], kv[0]))
    return word, n / len(texts)


def fake_llm():
    """The test server as a judge that says Good when one content word is in at least 60%
    of the utterances shown, and a namer that answers ``ask-<that word>``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from openai_server import FakeLLMServer, task_of, utterance_groups

    def answer(body: dict) -> str:
        task = task_of(body)
        texts = [t for group in utterance_groups(body) for t in group]
        word, share = _top_word(texts)
        if task == "judge":
            return "Good" if share >= 0.6 else "Bad"
        return f"ask-{word}" if task == "name" else "[30, 20, 40]"

    server = FakeLLMServer()
    server.answer = answer
    server.p_good = lambda body: 0.9 if answer(body) == "Good" else 0.1
    return server.start()


#: The replayed traffic: 30 utterances of each; the live catalog knows the first two.
CATEGORIES = ("age_limit", "atm_support", "lost_or_stolen_card", "verify_my_identity",
              "getting_spare_card")


def write_inputs(folder: Path) -> None:
    with (DATA / "banking77_sample.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["category"] in CATEGORIES]
    random.Random(0).shuffle(rows)
    with (folder / "calls.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "role"])
        writer.writerows([r["text"], "customer"] for r in rows)
    with (folder / "taxonomy.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "example"])
        for cat in CATEGORIES[:2]:
            writer.writerows([cat.replace("_", " "), r["text"]]
                             for r in [r for r in rows if r["category"] == cat][:10])


def section(blocks: list[str]) -> str:
    start, end = markers(SECTION)
    intro = """\
## Replay discovery over a range (`dialin rediscover`)

`dialin rediscover` answers "what does discovery make of the traffic of that range, with
the answers the LLM gave then": it reads the utterances of a range back from the input topic
(`DIALIN_TOPIC_UTTERANCES`), validates them exactly as a worker does (what a worker would
dead-letter is counted as rejected; an utterance id seen twice, a redelivery, is read once),
embeds them with the service's embedder (run it with the workers' settings:
`DIALIN_EMBEDDER`, and for `lsa` the same `DIALIN_DATA_DIR/lsa`), and fits the service's
estimator once per role with the settings' seed (`DIALIN_RANDOM_STATE`). It does not re-enact
the incremental history (buffer runs, consolidations): it is the batch run those utterances
make now. An event without a role keeps none (the worker infers one from the catalog as it
stood at arrival, which a replay cannot recall).

**The review decisions** apply as they stand now, read from the live catalog
(`dialin-catalog`, where the leader leaves on each intent what a person decided: its state,
`actor`, `pinned`, `merged_into`), so the output is the same for the same range and the same
catalog, and changes when a reviewer decides again. First, the LLM judge and namer of the
replay are shown the clusters people decided (approved, renamed, split off, rejected; the
most recent `DIALIN_DECISION_EXAMPLES`, language-matched) exactly as the live service shows
them, so they get the same prompts (the prompts are part of the response log's key: after a
new decision, the affected prompts are asked again once). Then each replayed intent that
belongs to a live intent (the live intent with its id, else the one the live catalog's
open-set rule gives at least half of its members: the diff's rule below, over the candidate
and active intents plus the rejected ones and those a person merged) takes what a person
decided there: a **rejected** live intent drops the replayed intent (its members stay
unassigned and the output's `dropped` says which live intent, rejected by whom); a **person's
label** (an intent a reviewer decided about, or an imported one) replaces the namer's; a
**person's merge** merges the replayed intent into the replayed intent that belongs to the
merge's target (which keeps its id, label and examples), or, when none does, relabels it to
the target's label. A merge or rejection the machine made (a consolidation) is not a
decision and is not applied. `run.decisions_applied` records what was applied: a `count` and
the list of `{intent_id, live_id, action, into}` (`action`: `reject`, `label`, `merge`,
`merge-label`), sorted; `run.decided_examples` says how many decided clusters the prompts
could show; the summary line on stderr says how many decisions applied.

**The range.** `--from` / `--to` are ISO-8601 times (`2026-11-01T00:00Z`; no zone means
UTC) compared with each record's Kafka timestamp; `--from-offset` / `--to-offset` are
`PARTITION:OFFSET` pairs, comma-separated (a partition not named is not limited). Both are
half-open, `[from, to)`, and may be combined. The topic is read from its beginning with a
group-less reader that commits nothing (the workers are not disturbed) and filtered, so a
long retention costs reading time.

**The LLM answers.** Every answer the service's LLM judge and namer get is recorded on the
compacted topic `DIALIN_TOPIC_LLM_RESPONSES` (default `dialin-llm-responses`; made by the
first writer, one partition), key = a SHA-256 of the model, the task, the full prompt and the
repetition; the value is the parsed answer (`{"task": ..., "answer": [value, P(Good)]}`), and
the first answer to a prompt is the one kept. A topic rather than files in the data dir: the
replay runs wherever an operator runs it, and a worker pod's data dir is its own. `dialin
rediscover` reads the log first and asks the LLM only the prompts never asked (recording
those answers too), so replaying a range whose prompts are all in the log needs no LLM server
(with one missing and the server down: one `error:` line, exit status 2). The service reads
the log as well, once, at its first LLM question: a prompt the deployment was ever answered is
not paid for twice. A crash may lose the answers of its last moments; a replay then asks
those prompts again. A prompt that got no valid answer (after the invalid-answer retries)
has nothing recorded and is asked again.

**The output** is the catalog that run produces, as JSON with sorted keys, written to `--out`
or stdout, and nothing is published (a dry run) unless `--publish TOPIC` names a topic (never
the live catalog topic: refused), where the records go with their centroid, exemplars and
threshold, as the leader writes them. Intent ids come from the members' utterance ids (the
service's own rule, so an intent the live service made from exactly the same utterances has
the same id), timestamps from the range's last record, never the clock; run-time figures
(seconds, requests) go to the summary line on stderr, not into the file. So the same range
twice gives the same bytes. Each intent lists its `members` (utterance ids).

**The diff** against the live catalog (read back from `dialin-catalog` as a worker reads it;
`--no-diff` skips it) is printed on stderr, one line per intent: `same` (the live catalog has
that id), `matches` (the live intent the live catalog's open-set rule gives most of its
members, when that is at least half of them; with how many), `new` (otherwise, with the most
members one live intent takes), `dropped` for a replayed intent a rejection dropped, and
`live-only` for the active live intents nothing matches. `--explain INTENT_ID` replays the range again (its
answers from the log) and prints, instead of the catalog, every judge question of the run
about a group of that intent's members, in the order asked, with its verdict, P(Good),
backend and spend-cap fallback.

Bad input is one `error:` line and exit status 2: `--from` not before `--to`, a malformed
time or offset, a range with no utterances, an unknown intent for `--explain`, an unreachable
broker.

The run below is real: an embedded broker, the `dialin` console script, LSA fitted on the
BANKING77 sample, and the project's OpenAI-protocol test server as the LLM, scripted to
answer Good when one content word is in at least 60% of the utterances shown and to name a
cluster `ask-<that word>`. Outputs are shortened where marked.
"""
    return f"{start}\n{intro}\n" + "\n".join(blocks) + f"\n{provenance('')}\n{end}"


def environment(port: int, folder: Path, llm_url: str) -> dict[str, str]:
    """The ``DIALIN_*`` variables of the demo deployment (and no other ``DIALIN_*``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
    env.update({"DIALIN_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "DIALIN_EMBEDDER": "lsa",
                "DIALIN_EMBEDDER_FIT_FILE": str(DATA / "banking77_sample.csv"),
                "DIALIN_DATA_DIR": str(folder / "data"), "DIALIN_JUDGE": "openai",
                "DIALIN_NAMER": "openai", "DIALIN_LLM_URL": llm_url,
                "DIALIN_LLM_MODEL": "test-model", "DIALIN_LLM_CONCURRENCY": "4"})
    return env


def session(s: Session, folder: Path, llm) -> list[str]:
    """Run the commands the section shows; its blocks."""
    blocks = []
    s.run("replay", "calls.csv", "--role-field", "role")
    s.run("catalog", "import", "taxonomy.csv")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ")
    end = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ")
    blocks.append("150 BANKING77 utterances (30 of each of "
                  + ", ".join(c.replace("_", " ") for c in CATEGORIES)
                  + ", shuffled, role customer) were replayed onto the input topic "
                  "(`dialin replay calls.csv --role-field role`) and the live catalog "
                  "seeded with the first two intents, ten examples each (`dialin "
                  "catalog import taxonomy.csv`). Replay the last two hours:\n\n")
    blocks.append(shown(s, "rediscover", "--from", start, "--to", end, "--out",
                        "replay.json"))
    first = (folder / "replay.json").read_text(encoding="utf-8")
    lines = first.splitlines()
    blocks.append(f"`replay.json` (its first 40 of {len(lines)} lines):\n\n```json\n"
                  + "\n".join(lines[:40]) + "\n```\n")
    doc = json.loads(first)
    intent = doc["intents"][0]["intent_id"]
    blocks.append(shown(s, "rediscover", "--from", start, "--to", end, "--explain",
                        intent, stdout_lines=12,
                        note="What made the largest intent (first lines):\n\n"))
    blocks.append(shown(s, "rediscover", "--to-offset", "0:10,1:10,2:10,3:10",
                        "--no-diff", "--out", "part.json",
                        note="By offsets: the first ten records of each of the four "
                             "partitions:\n\n"))
    blocks.append(decide(s, start, end))
    decided = (folder / "decided.json").read_text(encoding="utf-8")
    asked = len(llm.chat_requests())
    llm.stop()
    blocks.append(shown(s, "rediscover", "--from", start, "--to", end, "--out",
                        "again.json", "--no-diff",
                        note=f"The runs above sent {asked} requests to the LLM. Stop the "
                             "LLM server and replay the first range again (the same "
                             "decisions stand):\n\n"))
    again = (folder / "again.json").read_bytes()
    same = "the same" if again == decided.encode("utf-8") else "NOT the same"
    blocks.append(f"`again.json` is {same} as `decided.json`, byte for byte "
                  f"({len(again)} bytes).\n")
    blocks.append(shown(s, "rediscover", "--from", end, "--to", start, check=False,
                        note="Mistakes are one line (exit status 2):\n\n"))
    blocks.append(shown(s, "rediscover", "--explain", "intent-000000000000",
                        check=False))
    return blocks


def decide(s: Session, start: str, end: str) -> str:
    """Leave on the live catalog what the leader leaves after a reviewer's decisions about
    the replay's intents (the second largest renamed, the third rejected), then replay
    with them; the blocks that show it. The records are written here directly (SIMULATED
    review: the section says so), each made by the leader's own transition."""
    from dialin.models import CatalogIntent
    from dialin.streams.service.lifecycle import transition
    from dialin.streams.settings import Settings
    from dialin.streams.tools.replay import make_producer
    from dialin.streams.tools.watch import read_topic

    topic = "replayed-catalog"
    s.run("rediscover", "--from", start, "--to", end, "--no-diff", "--out", "published.json",
          "--publish", topic)
    settings = Settings(kafka_bootstrap=s.env["DIALIN_KAFKA_BOOTSTRAP"])
    records = sorted((r.data for r in read_topic(settings, topic, wait_for_topic=5.0)),
                     key=lambda r: (-r["size"], r["intent_id"]))
    if len(records) < 3:
        raise SystemExit(f"the replay made {len(records)} intents; the demo needs 3")
    named, gone = (CatalogIntent.from_record(r) for r in records[1:3])
    label = "confirm-" + named.label.split("-", 1)[-1]
    now = records[0]["updated_at"]
    entries = [transition(named, "renamed", "analyst", now, label=label, pinned=True,
                          renamed_from=named.label, decisions=("decision-1",)),
               transition(gone, "rejected", "analyst", now, pinned=True,
                          decisions=("decision-2",))]
    producer = make_producer(settings, acks="all")
    for e in entries:
        producer.send(settings.topic_catalog, key=e.intent_id.encode("utf-8"),
                      value=json.dumps(e.to_record(records[0]["embedder"])).encode("utf-8"))
    producer.flush()
    producer.close()
    note = (f"**With decisions.** Suppose an analyst renames `{named.intent_id}` "
            f"({named.label!r}) to {label!r} and rejects `{gone.intent_id}` ({gone.label!r}) "
            "on the review page. Here the records the leader leaves on `dialin-catalog` after "
            "those decisions (state, actor, `pinned`, `renamed_from`) are written directly, "
            "made by the leader's own lifecycle transition: a SIMULATED review, no review "
            "page or worker runs in this demo. Replay the same range again:\n\n")
    block = shown(s, "rediscover", "--from", start, "--to", end, "--out", "decided.json",
                  note=note)
    doc = json.loads((s.folder / "decided.json").read_text(encoding="utf-8"))
    return (block + "\n`decided.json`, its `run` part and what was dropped (members "
            "shortened to the first three):\n\n```json\n"
            + json.dumps({"run": doc["run"],
                          "dropped": [dict(d, members=d["members"][:3] + ["..."])
                                      for d in doc["dropped"]]},
                         indent=1, sort_keys=True, ensure_ascii=False) + "\n```\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "operate.md")
    out = parser.parse_args().out
    sys.path.insert(0, str(ROOT))
    from dialin.streams.tools.broker import EmbeddedBroker, free_port

    port, llm = free_port(), fake_llm()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(port):
        write_inputs(Path(tmp))
        blocks = session(Session(Path(tmp), environment(port, Path(tmp), llm.url)), Path(tmp), llm)
    write_section(out, SECTION, section(blocks))
    print(f"wrote the {SECTION} section of {out}")


if __name__ == "__main__":
    main()
