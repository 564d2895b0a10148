"""PII redaction throughput: texts per CPU second of ``Redactor.redact`` in one thread.

Usage: OMP_NUM_THREADS=1 python bench/pii_throughput.py [--data ../shared/data] [--n 2000]
       [--out docs/benchmarks.md]

Why these four sets: the redactor first counts digits (and looks for ``@``) and runs the
Presidio analyzer only on a text that could hold a value, so its speed depends on how
many texts do. Real BANKING77 questions (train split) and CrossWOZ turns (val) show the
common case; the same texts each given one generated, valid value (a phone number, a
Luhn-valid card, an e-mail, for Chinese also a resident ID with its GB 11643 checksum)
show the worst case, where every text goes through the analyzer. The share of those
texts that came out with a token shows that the values were found, not merely timed.

The engines are built and warmed on a few texts first (Presidio loads once per process;
the service pays that at start). Time is the process's CPU time, not wall time: the
redactor is single-threaded CPU work, and on a shared machine wall time would count
other people's load. Writes its section of ``docs/benchmarks.md`` between
``<!-- pii:start -->`` and ``<!-- pii:end -->`` and leaves every other byte alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from stdnum import luhn
from stdnum.cn import ric

from _data import banking77
from _doc import markers, provenance, write_section

from dialin.models import Redactor

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = markers("pii")
TOKENS = ("<PHONE>", "<EMAIL>", "<CARD>", "<CN_ID>")


def banking_texts(data: Path, n: int, rng: np.random.Generator) -> list[str]:
    texts, _ = banking77(data, "train")
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def crosswoz_texts(data: Path, n: int, rng: np.random.Generator) -> list[str]:
    with open(data / "crosswoz" / "val.jsonl", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, n))


def _card(rng: np.random.Generator) -> str:
    body = "4" + _digits(rng, 14)
    number = body + luhn.calc_check_digit(body)
    assert luhn.is_valid(number), number
    return " ".join(number[i:i + 4] for i in range(0, 16, 4))


def _cn_id(rng: np.random.Generator) -> str:
    body = f"110101{rng.integers(1960, 2000)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}{_digits(rng, 3)}"
    number = body + ric.calc_check_digit(body + "0")  # it reads the digits before the last
    assert ric.is_valid(number), number
    return number


def with_english_pii(texts: list[str], rng: np.random.Generator) -> list[str]:
    """Each text with one value appended: a US phone number, a card or an e-mail, in turn."""
    values = (lambda i: f" Call me back on (415) 555-{rng.integers(1000, 10000)}.",
              lambda i: f" My card number is {_card(rng)}.",
              lambda i: f" Write to customer{i}@example.com please.")
    return [t + values[i % 3](i) for i, t in enumerate(texts)]


def with_chinese_pii(texts: list[str], rng: np.random.Generator) -> list[str]:
    """Each text with one value appended: a mobile number, a card, a resident ID, in turn."""
    values = (lambda: f"我的手机号是13{rng.integers(5, 10)}{_digits(rng, 8)}。",
              lambda: f"卡号{_card(rng).replace(' ', '')}。",
              lambda: f"身份证号{_cn_id(rng)}。")
    return [t + values[i % 3]() for i, t in enumerate(texts)]


def measure(redactor: Redactor, texts: list[str]) -> tuple[float, float]:
    """(texts per CPU second, share of texts that came out with a token)."""
    start = time.process_time()
    out = redactor.redact_many(texts)
    seconds = time.process_time() - start
    return len(texts) / seconds, float(np.mean([any(tok in o for tok in TOKENS) for o in out]))


def section(rows: list[tuple[str, int, float, float]]) -> str:
    lines = [START, "## PII redaction throughput (`bench/pii_throughput.py`)", "",
             "`Redactor.redact` with the default entities (phone, e-mail, card, Chinese ID), one "
             "thread, engines built and warmed first; texts per second of process CPU time. Texts "
             "that cannot hold a value (too few digits, no `@`) skip the analyzer; the sets with a "
             "generated valid value in every text show the worst case.", "",
             "| texts | n | texts per CPU second | with a token after redaction |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {n:,} | {rate:,.0f} | {share:.0%} |" for name, n, rate, share in rows]
    lines += ["", provenance(), END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--n", type=int, default=2000, help="texts per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    english, chinese = banking_texts(args.data, args.n, rng), crosswoz_texts(args.data, args.n, rng)
    sets = [("BANKING77 train questions", english), ("CrossWOZ val turns", chinese),
            ("BANKING77 train + one English value each", with_english_pii(english, rng)),
            ("CrossWOZ val + one Chinese value each", with_chinese_pii(chinese, rng))]
    redactor = Redactor()
    for _, texts in sets:  # build Presidio and warm each language's path
        redactor.redact_many(texts[:20])
    rows = [(name, len(texts), *measure(redactor, texts)) for name, texts in sets]
    for row in rows:
        print(json.dumps(dict(zip(("texts", "n", "per_cpu_second", "with_token"), row, strict=True))))
    write_section(args.out, "pii", section(rows))


if __name__ == "__main__":
    main()
