#!/usr/bin/python3
"""debdesc-rebuild.py: rebuilds the debdesc data set (data/debdesc/README.md) from Debian's
Translation-en and Packages indices, then reports how it differs from a reference copy.
Standard library only; scripts/debdesc-rebuild.sh fetches the indices and calls this.

Usage: debdesc-rebuild.py TRANSLATION_EN PACKAGES OUT_DIR [REFERENCE_DIR]
"""
import collections
import hashlib
import json
import os
import re
import sys

FILES = ["labeled", "unlabeled", "unlabeled-gold", "dev", "test"]


def stanzas(path):
    """Yields each deb822 stanza as {field: [first line, continuation lines...]}."""
    fields, key = {}, None
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                if fields:
                    yield fields
                fields, key = {}, None
            elif line[0] in " \t" and key:
                fields[key].append(line)
            else:
                key, _, value = line.partition(":")
                fields[key] = [value.strip()]
    if fields:
        yield fields


def description_rows(translation_en):
    """(package, source text, synopsis) in index order. Paragraphs (split by " .") are
    joined with a newline; inside a paragraph, lines with single spaces."""
    rows = []
    for st in stanzas(translation_en):
        if "Package" not in st or "Description-en" not in st:
            continue
        desc = st["Description-en"]
        paragraphs = [[]]
        for line in desc[1:]:
            if line.strip() == ".":
                paragraphs.append([])
            else:
                paragraphs[-1].append(line.strip())
        source = "\n".join(" ".join(" ".join(p).split()) for p in paragraphs if p)
        rows.append((st["Package"][0], source, desc[0]))
    return rows


def source_packages(packages):
    """Binary package name -> source package name (the binary's own name when absent)."""
    out = {}
    for st in stanzas(packages):
        name = st.get("Package", [""])[0]
        if name and name not in out:
            out[name] = st["Source"][0].split()[0] if "Source" in st else name
    return out


TOKEN = re.compile(r"[A-Za-z0-9]+")


def template_key(package, source):
    """The source with the package name masked and digits zeroed. "Masked": every
    alphanumeric token of the text equal (ignoring case) to a token of 3 or more
    characters of the package name; so librust-foo+bar-dev's text "feature bar for the
    Rust foo crate" and every other member of that family give one key."""
    parts = {p.lower() for p in re.split(r"[^A-Za-z0-9]+", package) if len(p) >= 3}
    masked = TOKEN.sub(lambda m: "\0" if m.group(0).lower() in parts else m.group(0), source)
    return re.sub(r"[0-9]", "0", masked)


def clean(rows):
    seen, kept = set(), []
    for pkg, src, tgt in rows:  # exact duplicate sources: the first is kept
        if src not in seen:
            seen.add(src)
            kept.append((pkg, src, tgt))
    keys = [template_key(p, s) for p, s, _ in kept]
    count = collections.Counter(keys)
    kept = [row for row, k in zip(kept, keys) if count[k] < 3]
    kept = [(p, s, t) for p, s, t in kept if len(s.split()) >= 8 and len(t.split()) >= 2]
    kept = [(p, s, t) for p, s, t in kept if not s.lower().startswith(t.lower())]
    names, out = set(), []
    for pkg, src, tgt in kept:
        if pkg not in names:
            names.add(pkg)
            out.append((pkg, src, tgt))
    return out


def split(rows, srcpkg):
    files = {name: [] for name in FILES}
    for pkg, src, tgt in rows:
        h = int(hashlib.md5(srcpkg.get(pkg, pkg).encode()).hexdigest()[:8], 16) % 100
        row = {"id": pkg, "source": src, "target": tgt}
        if h < 2:
            files["test"].append(row)
        elif h < 4:
            files["dev"].append(row)
        elif int(hashlib.sha256(pkg.encode()).hexdigest(), 16) % 1000 < 367:
            files["labeled"].append(row)
        else:
            files["unlabeled-gold"].append(row)
            files["unlabeled"].append({"id": pkg, "source": src})
    return files


def write(files, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    sums = []
    for name in FILES:
        path = os.path.join(out_dir, name + ".jsonl")
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in files[name])
        data = data.encode("utf-8", errors="surrogateescape")
        with open(path, "wb") as f:
            f.write(data)
        sums.append("%s  %s.jsonl\n" % (hashlib.sha256(data).hexdigest(), name))
    with open(os.path.join(out_dir, "SHA256SUMS"), "w") as f:
        f.writelines(sorted(sums, key=lambda s: s.split()[1]))


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return {o["id"]: o for o in map(json.loads, f)}


def report(files, ref_dir):
    print("%-22s %8s %8s %8s %8s %8s %8s" %
          ("file", "shipped", "rebuilt", "same", "added", "removed", "changed"))
    for name in FILES:
        ref = read_jsonl(os.path.join(ref_dir, name + ".jsonl"))
        new = {r["id"]: r for r in files[name]}
        same = sum(1 for k in new if k in ref and ref[k] == new[k])
        added = sum(1 for k in new if k not in ref)
        removed = sum(1 for k in ref if k not in new)
        changed = sum(1 for k in new if k in ref and ref[k] != new[k])
        print("%-22s %8d %8d %8d %8d %8d %8d" %
              (name + ".jsonl", len(ref), len(new), same, added, removed, changed))


def main(argv):
    if len(argv) not in (4, 5):
        sys.exit(__doc__.strip().splitlines()[-1])
    rows = description_rows(argv[1])
    srcpkg = source_packages(argv[2])
    kept = clean(rows)
    files = split(kept, srcpkg)
    write(files, argv[3])
    print("debdesc-rebuild: %d descriptions, %d pairs after cleaning, written to %s"
          % (len(rows), len(kept), argv[3]))
    if len(argv) == 5:
        report(files, argv[4])


if __name__ == "__main__":
    main(sys.argv)
