"""Write the "Export and import the catalog" section of docs/operate.md from a real run.

Usage: python bench/catalog_doc.py [--out docs/operate.md]

Every command shown in the section is run here, as a user runs it (the ``dialin``
console script in a child process, on an embedded broker, in a scratch folder), and
its output is pasted as it came, shortened only where the section says so. The
section sits between ``<!-- catalog-io:start -->`` and ``<!-- catalog-io:end -->``;
nothing else in the file is touched. No number or output in it is typed by hand.

The taxonomy is BANKING77 (three intents, ten example utterances each, from
``tests/data/banking77_sample.csv``) and CrossWOZ (two dialogue acts, from
``tests/data/crosswoz_sample.jsonl``); the embedder is LSA fitted on the BANKING77
sample, so the run needs no model download and takes under a minute.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _doc import markers, provenance, write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SECTION = "catalog-io"


class Session:
    """Runs ``dialin`` commands in one scratch folder and records them for the doc."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        dialin = shutil.which("dialin", path=str(Path(sys.executable).parent)) or "dialin"
        done = subprocess.run([dialin, *args], cwd=self.folder, env=self.env, text=True,
                              capture_output=True, timeout=300)
        if check and done.returncode != 0:
            raise SystemExit(f"dialin {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def shown(self, *args: str, stdout_lines: int | None = None, note: str = "") -> str:
        """A fenced block: the command, then its stdout (first lines) and stderr."""
        done = self.run(*args)
        out = done.stdout.rstrip("\n").splitlines()
        if stdout_lines is not None and len(out) > stdout_lines:
            out = out[:stdout_lines] + [f"... ({len(done.stdout.splitlines()) - stdout_lines} "
                                        "more lines)"]
        err = [line for line in done.stderr.rstrip("\n").splitlines()
               if line.startswith(("exported", "imported", "error", "warning"))]
        body = "\n".join(["$ dialin " + " ".join(args), *out, *err])
        return f"{note}```console\n{body}\n```\n"


def write_inputs(folder: Path) -> None:
    with (DATA / "banking77_sample.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    wanted = ["card_swallowed", "lost_or_stolen_card", "verify_my_identity"]
    with (folder / "taxonomy.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "example"])
        for cat in wanted:
            texts = [r["text"] for r in rows if r["category"] == cat][:10]
            writer.writerows([cat.replace("_", " "), t] for t in texts)
    lines = [json.loads(x) for x in (DATA / "crosswoz_sample.jsonl").read_text("utf-8").splitlines()]
    acts = {"Request-酒店-地址": "查询-酒店-地址", "Inform-餐馆-电话": "告知-餐馆-电话"}
    with (folder / "zh.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "example", "role"])
        for line in lines:
            if line["intent"] in acts:
                writer.writerow([acts[line["intent"]], line["text"], line["role"]])


def section(blocks: list[str]) -> str:
    import botocore.session

    from dialin.streams.catalog import CX_DISPLAY_NAME_MAX, LEX_NAME_MAX, PUBLISHED_EXAMPLES

    lex_pattern = botocore.session.get_session().get_service_model("lexv2-models") \
        .operation_model("CreateIntent").input_shape.members["intentName"].metadata["pattern"]
    start, end = markers(SECTION)
    intro = f"""\
## Export and import the catalog

`dialin catalog export` writes the catalog's active intents, with their example utterances as
training phrases, in a bot platform's import format; `dialin catalog import` seeds the catalog
from an existing intent list, so known intents are matched from the first utterance and
discovery looks only for what is new. The `dialin` format is a full backup of the catalog.

**Export** reads the live catalog back from the `dialin-catalog` topic (as a worker does at
start; a group-less reader that commits nothing, so the workers are not disturbed), or, with
`--from intents.json`, a `dialin discover` output (its intents certified Bad are left out).
Training phrases are the intent's examples, PII-redacted with the service's redactor
(`DIALIN_PII_ENTITIES`), whitespace folded, de-duplicated (case-insensitive) and capped at
`--max-examples` (default {PUBLISHED_EXAMPLES}, which is also the most examples the catalog
keeps per intent). Markup a platform would misread is neutralised: square brackets become parentheses for Rasa (an entity
annotation otherwise), curly braces for Lex (a slot reference otherwise). An active intent left
without a phrase is left out and counted on the summary line.

| `--format` | What is written | Checked offline against |
|---|---|---|
| `dialin` | every entry of every status (merged ones keep the lineage), as catalog records with centroid, exemplars and threshold | the importer's own parser |
| `rasa` | Rasa 3 NLU YAML (`version: "3.1"`, one `intent` entry per intent, `metadata` with its id and role) | a JSON schema written from Rasa's documented training-data format (`jsonschema`; the `rasa` package does not install on Python 3.11) |
| `dialogflow-cx` | `{{"languageCode", "intents": [...]}}`, each intent the body of `projects.locations.agents.intents.create` | the official `google.cloud.dialogflow.cx.v3.Intent` protobuf type (`json_format.ParseDict`), plus the fields the API documents as required and the label rules |
| `lex-v2` | `{{"localeId", "intents": [...]}}`, each item the parameters of one `CreateIntent` call (`aws lexv2-models create-intent --cli-input-json`) | botocore's `lexv2-models` service model: `ParamValidator`, and the model's `max` and `pattern` constraints that botocore leaves to the server; no AWS call |
| `csv` | `intent_id,label,role,example`, one row per phrase | read back with `csv` |

`--language en|zh` sets Dialogflow's `languageCode` (`en`, `zh-cn`) and Lex's `localeId`
(`en_US`, `zh_CN`); by default it is detected from the labels and phrases. One language
applies to the whole export: a catalog that mixes languages (as the one below) is exported
once per target locale with `--language`. `--bot-id` fills
Lex's required `botId` (default `DIALINBOT0`, a placeholder to replace).

**Names.** Each platform gets the label mapped to its rules, unique within the export
(case-insensitive; a clash gets `_2`, `_3` in intent-id order):

- Rasa: every run of characters other than letters, digits, `_` and `-` becomes `_`. Letters
  of every script are kept, so **Chinese labels stay Chinese**.
- Dialogflow CX: the display name is the label (whitespace folded, at most
  {CX_DISPLAY_NAME_MAX} characters); **Chinese is kept**.
- Lex V2: `intentName` must match `{lex_pattern}` (botocore's model), so the label
  is **transliterated** to ASCII when dropping accents loses no letter (`Café crème` →
  `Cafe_creme`) and is **id-based** otherwise (`intent-ab12…` → `intent_ab12…`, every Chinese
  label); `intentDisplayName`, which takes any characters (at most {LEX_NAME_MAX}), keeps the
  label.
- A label with no letter or digit in any script names nothing anywhere: the export stops
  with one `error:` line naming the intent (exit status 2) instead of inventing a name.

**Import** takes a `dialin` backup (`.json`), a Rasa NLU file (`.yml`; `intent` entries only,
entity annotations read as their text) or a CSV with `label` and `example` (or `text`) columns
and optional `role` and `intent_id` (`--format` overrides the extension). It embeds the
examples with the service's embedder (`DIALIN_EMBEDDER`: run it with the workers' settings),
computes the exemplars and threshold with the discovery leader's rule, and publishes what the
leader publishes for a new intent, in the leader's order, each step acknowledged: the catalog
records, then the `created` intent updates. Running workers match to the new intents within a
poll; workers started later read them at start. Intents get a role (`--role`, default
`customer`, the role utterances without one are matched as), `judge.backend` `import`, and an
id derived from role and label unless the file names one, so importing a file twice publishes
nothing the second time. An intent the catalog already holds at the same or a newer version is
left alone; a new label that an active intent of the same role already has is refused.

**Backup.** `export --format dialin` then `import` gives back the same ids, labels, roles,
statuses, lineage (`merged_into`, `split_from`), versions, timestamps and vectors: each record
is exported field for field as the topic holds it (its examples pass the same redaction as
every export) and republished as it is, fields a newer version wrote included. The backup
holds the catalog only: the buffer and the remembered utterances (`dialin-memory`) are not in
it, so the first consolidation after a restore re-fits only what arrives afterwards. A backup taken under
another embedder is re-embedded from its examples (ids and lineage kept).

Imported intents are a person's taxonomy, so the service keeps them whole: a consolidation
never merges one away and never moves its remembered members to another intent (new intents
are discovered from the rest of the traffic). They have no remembered members until traffic
is matched to them.

The run below is real (an embedded broker, the `dialin` console script, LSA fitted on the
BANKING77 sample); outputs are shortened where marked.
"""
    return f"{start}\n{intro}\n" + "\n".join(blocks) + f"\n{provenance('')}\n{end}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "operate.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dialin.streams.tools.broker import EmbeddedBroker, free_port

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
        env.update({"DIALIN_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "DIALIN_EMBEDDER": "lsa",
                    "DIALIN_EMBEDDER_FIT_FILE": str(DATA / "banking77_sample.csv"),
                    "DIALIN_DATA_DIR": str(folder / "data")})
        s = Session(folder, env)
        blocks = []
        with EmbeddedBroker(port):
            lines = (folder / "taxonomy.csv").read_text("utf-8").splitlines()
            blocks.append("Seed the catalog from a CSV of labels and example utterances "
                          f"(`taxonomy.csv`, {len(lines) - 1} rows; its first lines):\n\n"
                          "```text\n" + "\n".join(lines[:3]) + "\n```\n")
            blocks.append(s.shown("catalog", "import", "taxonomy.csv"))
            blocks.append(s.shown("catalog", "import", "taxonomy.csv",
                                  note="Importing the same file again publishes nothing:\n\n"))
            blocks.append(s.shown("catalog", "import", "zh.csv",
                                  note="A Chinese taxonomy (CrossWOZ dialogue acts, roles from "
                                       "the file):\n\n"))
            blocks.append(s.shown("catalog", "export", "--format", "rasa", "--max-examples", "2",
                                  note="Export for Rasa (Chinese intent names kept):\n\n"))
            blocks.append(s.shown("catalog", "export", "--format", "lex-v2", "--max-examples",
                                  "2", "--language", "en", stdout_lines=20,
                                  note="Export for Lex V2 (first lines; Chinese labels get "
                                       "id-based `intentName`s and keep their "
                                       "`intentDisplayName`):\n\n"))
            lex = json.loads(s.run("catalog", "export", "--format", "lex-v2").stdout)
            cx = json.loads(s.run("catalog", "export", "--format", "dialogflow-cx").stdout)
            rows = ["| Lex `intentName` | Lex `intentDisplayName` | Dialogflow CX `displayName` |",
                    "|---|---|---|"]
            for request, intent in zip(sorted(lex["intents"], key=lambda r: r["description"]),
                                       sorted(cx["intents"], key=lambda i: i["description"])):
                rows.append(f"| `{request['intentName']}` | {request['intentDisplayName']} | "
                            f"{intent['displayName']} |")
            blocks.append("The names each platform gets for this catalog (from the two "
                          "exports, in intent-id order):\n\n" + "\n".join(rows) + "\n")
            blocks.append(s.shown("catalog", "export", "--format", "dialogflow-cx",
                                  "--max-examples", "1", stdout_lines=14,
                                  note="Export for Dialogflow CX (first lines):\n\n"))
            blocks.append(s.shown("catalog", "export", "--format", "dialin", "--out",
                                  "backup.json",
                                  note="Back up, stop the broker (the embedded one keeps "
                                       "nothing), start an empty one, restore:\n\n"))
            before = s.run("catalog", "export", "--format", "csv").stdout
        with EmbeddedBroker(port):
            empty = s.run("catalog", "export", "--format", "csv", check=False)
            blocks.append("```console\n$ dialin catalog export --format csv\n"
                          + empty.stderr.strip() + "\n```\n")
            blocks.append(s.shown("catalog", "import", "backup.json"))
            after = s.run("catalog", "export", "--format", "csv").stdout
            same = "the same" if after == before else "NOT the same"
            blocks.append(f"The CSV export after the restore is {same} as before the backup, "
                          f"byte for byte ({len(after.splitlines()) - 1} rows).\n")
    write_section(args.out, SECTION, section(blocks))
    print(f"wrote the {SECTION} section of {args.out}")


if __name__ == "__main__":
    main()
