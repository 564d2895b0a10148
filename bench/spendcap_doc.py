"""Write the "LLM spend caps" example of docs/operate.md from a real run.

Usage: python bench/spendcap_doc.py [--out docs/operate.md]

The commands shown are run here as a user runs them (the ``dialin`` console script in a
child process, in a scratch folder) and their output pasted as it came: ``dialin
discover`` on 150 BANKING77 utterances with the LLM judge and namer and ``--max-llm-calls
20``, the cap's line on stderr, ``metadata.llm_spend`` and the intents the offline judge
certified; then the same run without a cap, and a bad cap. The section sits between
``<!-- spendcap:start -->`` and ``<!-- spendcap:end -->``; no figure in it is typed by hand.

The LLM is the project's OpenAI-protocol test server (``tests/openai_server.py``, real HTTP
on loopback) with the scripted answers of :mod:`rediscover_doc` (Good when one content word
is in at least 60% of the utterances shown); the embedder is LSA fitted on the input, so
nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from _doc import markers, provenance, write_section
from catalog_doc import Session
from rediscover_doc import fake_llm, write_inputs

ROOT = Path(__file__).resolve().parents[1]
SECTION = "spendcap"
CAP = 20


def block(s: Session, *args: str, check: bool = True) -> tuple[str, object]:
    """A fenced block with the command and the stderr lines a user reads; the result."""
    done = s.run(*args, check=check)
    err = [line for line in done.stderr.splitlines() if line.startswith(("dialin:", "error"))]
    body = "\n".join(["$ dialin " + " ".join(args), *err])
    body = re.sub(r"http://127\.0\.0\.1:\d+/v1", "http://localhost:8000/v1", body)
    return f"```console\n{body}\n```\n", done


def section(s: Session, folder: Path, llm_url: str) -> str:
    common = ["discover", "calls.csv", "--text-field", "text", "--embedder", "lsa",
              "--judge", "openai", "--namer", "openai", "--llm-url", llm_url,
              "--llm-model", "test-model"]
    capped, _ = block(s, *common, "--max-llm-calls", str(CAP), "--out", "capped.json")
    meta = json.loads((folder / "capped.json").read_text(encoding="utf-8"))
    spend = meta["metadata"]["llm_spend"]
    offline = [i["label"] for i in meta["intents"] if i.get("fallback")]
    uncapped, _ = block(s, *common, "--out", "uncapped.json")
    free = json.loads((folder / "uncapped.json").read_text(encoding="utf-8"))
    bad, _ = block(s, *common, "--max-llm-calls", "-1", check=False)
    start, end = markers(SECTION)
    return f"""{start}
A real run (the LLM is the project's OpenAI-protocol test server with scripted answers;
150 BANKING77 utterances of five intents; `bench/spendcap_doc.py` wrote this):

{capped}
`metadata.llm_spend` of `capped.json`:

```json
{json.dumps(spend, indent=1, sort_keys=True)}
```

{len(offline)} of its {len(meta['intents'])} intents were certified by the offline judge
(`"fallback": "call_cap"`). The same run without a cap sent
{free['metadata'].get('judge_calls', 'n/a')} judge questions and found
{len(free['intents'])} intents:

{uncapped}
A bad cap is one line and exit status 2:

{bad}
{provenance('')}
{end}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "operate.md")
    out = parser.parse_args().out
    llm = fake_llm()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
        env["DIALIN_DATA_DIR"] = str(folder / "data")
        text = section(Session(folder, env), folder, llm.url)
    write_section(out, SECTION, text)
    print(f"wrote the {SECTION} section of {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
