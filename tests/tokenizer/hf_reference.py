#!/usr/bin/env python3
"""Reference files for nabla's GPT-2 tokenizer from Hugging Face `tokenizers` (pip install tokenizers).

Trains a byte-level BPE (GPT-2's pre-tokenizer pattern, no prefix space, vocab 2000, special token
<|endoftext|>) on the corpus, saves vocab.json + merges.txt, reloads them as a user would (the two
files + the special token) and, for each text, writes into <out>:
  <name>.txt     the text's exact bytes (UTF-8)
  <name>.ids     its ids, space-separated
  <name>.splits  the byte lengths of its pre-tokens: the text cut at each <|endoftext|> (which is a
                 piece of its own), each part split by the ByteLevel pre-tokenizer
for the texts
  corpus   the training corpus (tiny Shakespeare)
  torture  tests/tokenizer/torture.txt (scripts, combining marks, emoji, spaces, <|endoftext|>)
  probe    every code point at the ends of the \\p{L}, \\p{N} and \\s ranges of nabla's tables and
           of this Python's unicodedata (and one past each end), each in a context that tells
           the classes apart;
           --all-code-points: every code point but the surrogates (about 35 MB; slow, for a
           one-off check of the generated tables)

  hf_reference.py <out> <corpus.txt> <torture.txt> [--all-code-points]
"""
import os
import re
import sys
import time
import unicodedata

import tokenizers
from tokenizers import ByteLevelBPETokenizer

EOT = "<|endoftext|>"


def edges():
    """The first and last code point of each range in nabla's tables (unicode_tables.hpp) and of
    the L, N and White_Space classes of this Python's unicodedata, and one past each end."""
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "include", "nabla", "text",
                          "unicode_tables.hpp")
    with open(header, encoding="utf-8") as f:
        table = [(int(lo, 16), int(hi, 16)) for lo, hi in re.findall(r"\{0x([0-9A-F]+), 0x([0-9A-F]+)\}", f.read())]
    assert len(table) > 500, header
    cat = [unicodedata.category(chr(cp)) for cp in range(0x110000)]
    classes = [lambda c: cat[c][0] == "L", lambda c: cat[c][0] == "N",
               lambda c: cat[c] in ("Zs", "Zl", "Zp") or 0x09 <= c <= 0x0D or c == 0x85]
    out = set()
    for lo, hi in table:
        out.update((lo - 1, lo, hi, hi + 1))
    for inside in classes:
        for cp in range(0x110000):
            if inside(cp) != (cp > 0 and inside(cp - 1)):  # a range starts at cp or ends at cp - 1
                out.update((cp - 1, cp))
    return sorted(c for c in out if 0 <= c < 0x110000 and not 0xD800 <= c <= 0xDFFF)


def probe_text(cps):
    # After a letter, a digit, a symbol, a space, itself; then a newline and a '.', so that each
    # code point's part ends on a piece boundary. Every class splits these differently.
    return "".join(f"a{c}1{c}!{c} {c}{c}\n." for c in map(chr, cps))


def splits(pre_tokenizer, text):
    out = []
    for i, part in enumerate(text.split(EOT)):
        if i:
            out.append(len(EOT))
        if part:
            # a pre-token is byte-level text: one character per byte
            out.extend(len(piece) for piece, _ in pre_tokenizer.pre_tokenize_str(part))
    return out


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    out, corpus_path, torture_path = sys.argv[1:4]
    all_cps = "--all-code-points" in sys.argv[4:]
    os.makedirs(out, exist_ok=True)

    t0 = time.perf_counter()
    trained = ByteLevelBPETokenizer(add_prefix_space=False)
    trained.train([corpus_path], vocab_size=2000, min_frequency=2, special_tokens=[EOT], show_progress=False)
    trained.save_model(out)
    t_train = time.perf_counter() - t0

    tok = ByteLevelBPETokenizer(os.path.join(out, "vocab.json"), os.path.join(out, "merges.txt"), add_prefix_space=False)
    tok.add_special_tokens([EOT])
    pre = tok._tokenizer.pre_tokenizer

    with open(corpus_path, "rb") as f:
        corpus = f.read().decode("utf-8")
    with open(torture_path, "rb") as f:
        torture = f.read().decode("utf-8")
    assert EOT in torture
    cps = range(0x110000) if all_cps else edges()
    texts = {"corpus": corpus, "torture": torture,
             "probe": probe_text(c for c in cps if not 0xD800 <= c <= 0xDFFF)}
    for name, text in texts.items():
        t0 = time.perf_counter()
        ids = tok.encode(text).ids
        dt = time.perf_counter() - t0
        assert ids == trained.encode(text).ids, f"{name}: the reloaded tokenizer differs from the trained one"
        assert tok.decode(ids, skip_special_tokens=False) == text, f"{name}: Hugging Face's own round trip fails"
        with open(os.path.join(out, name + ".txt"), "wb") as f:
            f.write(text.encode("utf-8"))
        with open(os.path.join(out, name + ".ids"), "w") as f:
            f.write(" ".join(map(str, ids)) + "\n")
        with open(os.path.join(out, name + ".splits"), "w") as f:
            f.write(" ".join(map(str, splits(pre, text))) + "\n")
        mb = len(text.encode("utf-8")) / 1e6
        print(f"hf_reference: {name}: {mb:.2f} MB, {len(ids)} ids, Hugging Face encode {dt * 1e3:.0f} ms ({mb / dt:.1f} MB/s)")
    print(f"hf_reference: tokenizers {tokenizers.__version__}, vocab {tok.get_vocab_size()}, trained in {t_train:.1f} s, "
          f"probe: the ends of the ranges of nabla's tables and of Unicode {unicodedata.unidata_version}, files in {out}")


if __name__ == "__main__":
    main()
