#!/usr/bin/env python3
"""Builds the training corpus of the default model from two Debian packages, plus chat examples
generated from them.

Sources (install with tools/train/install_corpus.sh):
  python3.11-doc  /usr/share/doc/python3.11/html/_sources/**/*.rst.txt: the Python 3.11
                  documentation (PSF License Version 2). Prose paragraphs are kept; code blocks,
                  tables and directives are dropped; reST roles become their text.
  wordnet-base    /usr/share/wordnet/data.{noun,verb,adj,adv}: WordNet 3.0 (the WordNet 3.0
                  licence, permissive with attribution). Each synset becomes a sentence such as
                  "A dog is a member of the genus Canis ...".

Chat examples (rendered later with the chat template): definitions and synonyms from WordNet,
"what does <function> do" from the Python library reference, small arithmetic, greetings.

Writes tools/train/data/{train,heldout}.jsonl: one record per document, {"text": ...} for plain
text and {"messages": [...]} for a conversation. A document goes to the held-out split when the
CRC32 of its key falls in the last 2 % (stable whatever else changes). Also writes
tools/train/data/heldout.txt: the held-out plain text (the perplexity file).
"""
import glob
import json
import os
import random
import re
import zlib

DOCS = "/usr/share/doc/python3.11/html/_sources"
WORDNET = "/usr/share/wordnet"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
HELDOUT_PERCENT = 2

ROLE = re.compile(r":[a-zA-Z:+-]+:`([^`]*)`")
LINK = re.compile(r"`([^`<]*?)\s*<[^>]*>`_+")
SIMPLE_LINK = re.compile(r"`([^`]+)`_+")


def role_text(m):
    text = m.group(1)
    if "<" in text and text.endswith(">"):
        text = text[: text.index("<")].strip()
    if text.startswith("~"):
        text = text[1:].split(".")[-1]
    return text.lstrip("!")


def clean_inline(text):
    text = ROLE.sub(role_text, text)
    text = LINK.sub(r"\1", text)
    text = SIMPLE_LINK.sub(r"\1", text)
    text = text.replace("``", "")
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"\*([^*\s][^*]*)\*", r"\1", text)
    text = re.sub(r"\|([^|\s]+)\|", r"\1", text)
    text = text.replace("\\", "")
    return re.sub(r"\s+", " ", text).strip()


def is_prose(text):
    if len(text) < 40 or not text[0].isalnum():
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters / len(text) > 0.85 and text.rstrip()[-1] in ".:!?)"


def rst_paragraphs(source):
    """Prose paragraphs and titles of one reST file, plus (name, first paragraph) of every
    function/method/class description."""
    lines = source.split("\n")
    paragraphs, described = [], []
    block, skip_indent, pending_name, module = [], None, None, ""

    def flush():
        nonlocal block, pending_name
        if not block:
            return
        text = clean_inline(" ".join(line.strip() for line in block))
        block = []
        if is_prose(text):
            paragraphs.append(text)
            if pending_name:
                described.append((pending_name, text))
        pending_name = None

    for i, raw in enumerate(lines):
        line = raw.rstrip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if line and indent <= skip_indent:
                skip_indent = None
            else:
                continue
        if not line:
            flush()
            continue
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if re.fullmatch(r"([=\-~^\"'*#+`])\1{3,}", stripped):
            flush()
            continue
        if nxt and re.fullmatch(r"([=\-~^\"'*#+`])\1{3,}", nxt) and len(nxt) >= len(stripped) - 2:
            flush()
            title = clean_inline(stripped)
            title = re.sub(r"^[\w.]+ --- ", "", title)
            if len(title) > 3:
                paragraphs.append(title)
            continue
        m = re.match(r"\.\. (module|currentmodule):: (\S+)", stripped)
        if m:
            module = m.group(2)
        m = re.match(r"\.\. (function|method|class|exception):: ([\w.]+)\(", stripped)
        if m:
            flush()
            name = m.group(2)
            if module and not name.startswith(module + "."):
                name = module + "." + name
            pending_name = (m.group(1), name)
            continue
        if stripped.startswith(".. ") or stripped.startswith(">>>") or stripped.startswith("|"):
            flush()
            skip_indent = indent
            continue
        if stripped.startswith(("+-", "==", ":")) and not ROLE.match(stripped):
            flush()
            continue
        block.append(line)
        if stripped.endswith("::"):
            block[-1] = block[-1].rstrip(":") + (":" if not stripped == "::" else "")
            flush()
            skip_indent = indent
    flush()
    return paragraphs, described


def python_docs():
    docs, described = [], []
    for path in sorted(glob.glob(os.path.join(DOCS, "**", "*.rst.txt"), recursive=True)):
        rel = os.path.relpath(path, DOCS)
        if rel.startswith(("whatsnew/", "c-api/", "distutils/")) or "license" in rel:
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            paragraphs, d = rst_paragraphs(f.read())
        described += d
        # Documents of at most ~3000 characters so that held-out sampling is fine-grained.
        chunk, size = [], 0
        for p in paragraphs:
            chunk.append(p)
            size += len(p)
            if size > 3000:
                docs.append(("py:" + rel + ":" + str(len(docs)), "\n\n".join(chunk)))
                chunk, size = [], 0
        if chunk:
            docs.append(("py:" + rel + ":" + str(len(docs)), "\n\n".join(chunk)))
    return docs, described


POS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}


def wordnet_synsets():
    """[(pos, [lemmas], definition, [examples], tag count of the first lemma's sense)]"""
    counts = {}
    for name in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(WORDNET, "index." + name), encoding="latin-1") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                parts = line.split()
                lemma, p_cnt = parts[0], int(parts[3])
                tagsense = int(parts[5 + p_cnt])
                offsets = parts[6 + p_cnt:]
                for rank, off in enumerate(offsets):
                    # First senses of often-tagged lemmas are the common meanings.
                    counts[(name, off)] = max(counts.get((name, off), 0),
                                              tagsense if rank == 0 else tagsense // (rank + 2))
    synsets = []
    for name in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(WORDNET, "data." + name), encoding="latin-1") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                head, _, gloss = line.partition("|")
                parts = head.split()
                off, ss_type, w_cnt = parts[0], parts[2], int(parts[3], 16)
                lemmas = [re.sub(r"\(.*\)$", "", parts[4 + 2 * k]).replace("_", " ")
                          for k in range(w_cnt)]
                pieces = [p.strip() for p in gloss.strip().split(";")]
                definition = "; ".join(p for p in pieces if p and not p.startswith('"'))
                examples = [p.strip('"').strip() for p in pieces if p.startswith('"')]
                examples = [e.rstrip('"') for e in examples if len(e) > 8]
                if not definition:
                    continue
                synsets.append((POS[ss_type], lemmas, definition, examples,
                                counts.get((name, off), 0)))
    return synsets


def article(phrase):
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def sentence(text):
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def describe(pos, lemma, definition):
    if pos == "noun":
        if lemma[:1].isupper():
            return sentence(f"{lemma} is {definition}")
        return sentence(f"{article(lemma)} {lemma} is {definition}")
    if pos == "verb":
        return sentence(f"to {lemma} means to {definition}")
    if pos == "adj":
        return sentence(f"the word \"{lemma}\" means {definition}")
    return sentence(f"the adverb \"{lemma}\" means {definition}")


def wordnet_docs(synsets):
    docs, group = [], []
    for i, (pos, lemmas, definition, examples, count) in enumerate(synsets):
        if count == 0 and len(examples) == 0:
            continue  # rare, unillustrated senses: mostly taxonomy
        text = describe(pos, lemmas[0], definition)
        if examples:
            text += " For example: " + sentence(examples[0])
        if len(lemmas) > 1:
            text += " Other words for it are " + ", ".join(lemmas[1:4]) + "."
        group.append(text)
        if len(group) == 8:
            docs.append(("wn:" + str(i), "\n".join(group)))
            group = []
    return docs


GREETINGS = [
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi", "Hi! What would you like to know?"),
    ("Good morning.", "Good morning! How can I help you?"),
    ("Who are you?", "I am a small language model. I can define English words, explain parts of "
     "the Python standard library and do simple arithmetic."),
    ("What can you do?", "I can define English words, tell you what a Python function does and "
     "add, subtract or multiply small numbers."),
    ("Thank you!", "You are welcome!"),
    ("Thanks.", "You are welcome. Is there anything else you would like to know?"),
    ("How are you?", "I am fine, thank you. How can I help you?"),
    ("Goodbye.", "Goodbye! Have a nice day."),
    ("What is your name?", "I am the default model of epserve, a small mixture-of-experts "
     "language model."),
]

DEFINE_Q = ["What does the word \"{w}\" mean?", "Define \"{w}\".", "What is the meaning of {w}?",
            "What does {w} mean?", "Can you explain the word {w}?", "Tell me what {w} means."]
NOUN_Q = ["What is {a} {w}?", "What is {a} {w}?", "Explain what {a} {w} is."]
SYN_Q = ["What is another word for {w}?", "Give me a synonym for {w}.",
         "What is a synonym of \"{w}\"?"]
FUNC_Q = ["What does {f} do?", "What does the Python function {f} do?", "Explain {f}.",
          "How does {f} work in Python?"]
CLASS_Q = ["What is {f} in Python?", "What is the {f} class?", "Explain {f}."]
ARITH_Q = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?",
           "{a} {op} {b} = ?"]


def chat_examples(synsets, described, rng):
    chats = []
    for q, a in GREETINGS:
        for _ in range(30):
            chats.append(("greet", [{"role": "user", "content": q},
                                    {"role": "assistant", "content": a}]))
    common = [s for s in synsets if s[4] > 0]
    for pos, lemmas, definition, examples, count in common:
        w = lemmas[0]
        if pos == "noun" and not w[:1].isupper() and rng.random() < 0.5:
            q = rng.choice(NOUN_Q).format(a=article(w), w=w)
        else:
            q = rng.choice(DEFINE_Q).format(w=w)
        a = describe(pos, w, definition)
        if examples and rng.random() < 0.5:
            a += " For example: " + sentence(examples[0])
        chats.append(("def:" + pos + w, [{"role": "user", "content": q},
                                          {"role": "assistant", "content": a}]))
        if len(lemmas) > 1 and rng.random() < 0.3:
            q = rng.choice(SYN_Q).format(w=w)
            a = f"Another word for {w} is {lemmas[1]}."
            chats.append(("syn:" + w, [{"role": "user", "content": q},
                                       {"role": "assistant", "content": a}]))
    for (kind, name), text in described:
        first = re.split(r"(?<=\.) ", text)
        answer = " ".join(first[:2])
        if kind in ("function", "method"):
            q = rng.choice(FUNC_Q).format(f=name + "()")
        else:
            q = rng.choice(CLASS_Q).format(f=name)
        chats.append(("fn:" + name, [{"role": "user", "content": q},
                                     {"role": "assistant", "content": answer}]))
    for i in range(6000):
        op = rng.choice(["+", "-", "*"])
        a, b = rng.randint(0, 99 if op != "*" else 12), rng.randint(0, 99 if op != "*" else 12)
        value = a + b if op == "+" else a - b if op == "-" else a * b
        q = rng.choice(ARITH_Q).format(a=a, op=op, b=b)
        chats.append((f"ar:{i}", [{"role": "user", "content": q},
                                  {"role": "assistant", "content": f"{a} {op} {b} = {value}."}]))
    return chats


def held_out(key):
    return zlib.crc32(key.encode()) % 100 >= 100 - HELDOUT_PERCENT


def main():
    rng = random.Random(0)
    os.makedirs(OUT, exist_ok=True)
    py_docs, described = python_docs()
    synsets = wordnet_synsets()
    wn_docs = wordnet_docs(synsets)
    chats = chat_examples(synsets, described, rng)
    records = [(k, {"text": t}) for k, t in py_docs + wn_docs]
    records += [(k, {"messages": m}) for k, m in chats]
    rng.shuffle(records)
    sizes = {}
    with open(os.path.join(OUT, "train.jsonl"), "w") as train, \
            open(os.path.join(OUT, "heldout.jsonl"), "w") as heldout, \
            open(os.path.join(OUT, "heldout.txt"), "w") as heldout_text:
        for key, record in records:
            split = "heldout" if held_out(key) else "train"
            (heldout if split == "heldout" else train).write(json.dumps(record) + "\n")
            if split == "heldout" and "text" in record:
                heldout_text.write(record["text"] + "\n\n")
            source = key.split(":")[0]
            n = len(json.dumps(record))
            sizes[(split, source)] = sizes.get((split, source), 0) + n
    for (split, source), n in sorted(sizes.items()):
        print(f"{split:8s} {source:6s} {n / 1e6:7.2f} MB")
    print(f"python docs {len(py_docs)} documents, {len(described)} described names; "
          f"wordnet {len(synsets)} synsets -> {len(wn_docs)} documents; {len(chats)} chats")


if __name__ == "__main__":
    main()
